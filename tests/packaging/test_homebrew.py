"""packaging/homebrew/ccxd.rb: valid Ruby, rubocop-clean, and its resources are the pinned runtime deps."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import subprocess
from pathlib import Path
from types import ModuleType

from tests.conftest import require_tool

HOMEBREW = Path(__file__).resolve().parents[2] / "packaging" / "homebrew"
FORMULA = HOMEBREW / "ccxd.rb"


def _gen_resources() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("gen_resources", str(HOMEBREW / "gen-resources"))
    spec = importlib.util.spec_from_loader("gen_resources", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_formula_is_valid_ruby() -> None:
    ruby = require_tool("ruby")
    proc = subprocess.run([ruby, "-c", str(FORMULA)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "Syntax OK", proc.stdout + proc.stderr


def test_formula_is_rubocop_clean() -> None:
    rubocop = require_tool("rubocop")
    proc = subprocess.run(
        [rubocop, "--format", "simple", "ccxd.rb"], cwd=HOMEBREW, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_resources_are_exactly_the_pinned_runtime_dependencies() -> None:
    gen = _gen_resources()
    want = gen.runtime_closure(gen.pins())
    text = FORMULA.read_text()
    blocks = re.findall(
        r'^  resource "([^"]+)" do\n    url "([^"]+)"\n    sha256 "([^"]+)"\n  end$', text, re.MULTILINE
    )
    assert len(blocks) == text.count('resource "'), "every resource block has exactly a url and a sha256"
    have = {}
    for name, url, sha in blocks:
        assert url.startswith("https://files.pythonhosted.org/packages/"), url
        assert re.fullmatch(r"[0-9a-f]{64}", sha), (name, sha)
        filename = url.rsplit("/", 1)[1]
        stem = "[-_.]".join(re.escape(part) for part in name.split("-"))
        m = re.fullmatch(rf"{stem}-(.+)\.(tar\.gz|zip)", filename, re.IGNORECASE)
        assert m, f"resource {name}: {filename} is not an sdist of {name}"
        have[name] = m.group(1)
    assert have == want, (
        "packaging/homebrew/ccxd.rb's resources differ from the pinned runtime dependencies; "
        "run .venv/bin/python packaging/homebrew/gen-resources --write"
    )


def test_formula_has_service_and_test_blocks() -> None:
    text = FORMULA.read_text()
    assert 'depends_on "redis"' in text and re.search(r'depends_on "python@3\.\d+"', text)
    assert "include Language::Python::Virtualenv" in text and "virtualenv_install_with_resources" in text
    service = text[text.index("  service do") : text.index("  end", text.index("  service do"))]
    for word in ('run [opt_bin/"ccxd"]', "keep_alive", "log_path", "error_log_path"):
        assert word in service, word
    assert "  test do" in text and "ccxctl run 'echo hi'" in text
