"""The man pages render without warnings and document every command, option and setting.

Other changes add commands, options and config keys; these tests fail until the man
page says what they are, and their messages give the roff to paste and where.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from ccxctl.app import app
from ccxd import config_docs
from ccxd.__main__ import _parser as ccxd_parser
from tests.conftest import require_tool

MAN = Path(__file__).resolve().parents[2] / "man"
PAGES = ["ccxd.8", "ccxctl.1", "ccxd.toml.5"]


def _plain(roff: str) -> str:
    """Roff source with the escapes that hide option names removed."""
    text = roff.replace("\\-", "-").replace("\\&", "").replace("\\e", "\\")
    return re.sub(r"\\f[BIRP]|\\f\(\w\w|\\f\[\w*\]", "", text)


def _sections(roff: str, macro: str) -> dict[str, str]:
    """Heading text → body, for every ``macro`` (.SH or .SS) heading."""
    parts: dict[str, str] = {}
    heading = None
    for line in roff.splitlines():
        if line.startswith((".SH ", ".SS ")):
            heading = line[4:].strip().strip('"') if line.startswith(macro + " ") else None
            if heading is not None:
                parts[heading] = ""
            continue
        if heading is not None:
            parts[heading] += line + "\n"
    return parts


def _mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def _roff_option(param: Any) -> str:
    names = ", ".join(n.replace("-", "\\-") for n in param.opts + param.secondary_opts)
    return f".TP\n.B {names}\n{param.help or ''}\n"


def _commands() -> Iterator[tuple[str, Any]]:
    def walk(cmd: Any, path: list[str]) -> Iterator[tuple[str, Any]]:
        subs = getattr(cmd, "commands", None)
        if path and (not subs or any(p.param_type_name == "option" for p in cmd.params)):
            yield " ".join(path), cmd
        for name, sub in sorted((subs or {}).items()):
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_without_warnings(page: str) -> None:
    groff = require_tool("groff")
    source = (MAN / page).read_bytes()
    assert source.isascii(), f"man/{page}: write non-ASCII characters as \\[uXXXX] escapes"
    proc = subprocess.run(
        [groff, "-man", "-ww", "-Tutf8", "-z", str(MAN / page)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_every_ccxctl_command_and_option_is_in_ccxctl_1() -> None:
    roff = (MAN / "ccxctl.1").read_text()
    sections = {_plain(k): _plain(v) for k, v in _sections(roff, ".SS").items()}
    missing = []
    for path, cmd in _commands():
        title = next((t for t in sections if re.match(rf"ccxctl {re.escape(path)}( |$)", t)), None)
        options = [p for p in cmd.params if p.param_type_name == "option" and p.name != "help"]
        if title is None:
            usage = " ".join(
                ["[OPTIONS]", *((p.name or '').upper() for p in cmd.params if p.param_type_name == "argument")]
            )
            body = "".join(_roff_option(p) for p in options)
            missing.append(
                f"command `ccxctl {path}`: add to man/ccxctl.1 under .SH COMMANDS:\n"
                f'.SS "ccxctl {path} {usage}"\n{(cmd.help or "").strip()}\n{body}'
            )
            continue
        for param in options:
            names = [n for n in param.opts + param.secondary_opts if not _mentions(sections[title], n)]
            if names:
                missing.append(
                    f"option {'/'.join(names)} of `ccxctl {path}`: add to man/ccxctl.1 in the section "
                    f'.SS "{title}":\n{_roff_option(param)}'
                )
    global_text = _plain(_sections(roff, ".SH").get("OPTIONS", ""))
    for param in typer.main.get_command(app).params:
        names = [n for n in param.opts + param.secondary_opts if not _mentions(global_text, n)]
        if param.param_type_name == "option" and names:
            missing.append(
                f"global option {'/'.join(names)}: add to man/ccxctl.1 under .SH OPTIONS:\n{_roff_option(param)}"
            )
    assert not missing, "\n\n".join(missing)


def test_every_config_key_is_in_ccxd_toml_5() -> None:
    roff = (MAN / "ccxd.toml.5").read_text()
    documented = set(re.findall(r"^\.B (\w+)$", roff, flags=re.MULTILINE))
    missing = [
        f"config key `{f.name}`: add to man/ccxd.toml.5 under .SS {f.section} (create that heading if missing; keep the order of ccxd/config.py):\n"
        + config_docs.man_entry(f)
        for f in config_docs.field_docs()
        if f.name not in documented
    ]
    assert not missing, (
        "\n\n".join(missing) + "\n\nOr regenerate the whole KEYS section from ccxd/config.py: "
        "python -m ccxd.config_docs man/ccxd.toml.5"
    )
    stale = documented - {f.name for f in config_docs.field_docs()}
    keys_section = _sections(roff, ".SH")["KEYS"]
    stale = {k for k in stale if f".B {k}\n" in keys_section}
    assert not stale, (
        f"man/ccxd.toml.5 documents keys that ccxd/config.py no longer has: {sorted(stale)}; "
        "regenerate its KEYS section: python -m ccxd.config_docs man/ccxd.toml.5"
    )


def test_every_ccxd_option_is_in_ccxd_8() -> None:
    text = _plain(_sections((MAN / "ccxd.8").read_text(), ".SH")["OPTIONS"])
    missing = [
        f"option {name} of ccxd: add to man/ccxd.8 under .SH OPTIONS:\n.TP\n.B {name.replace('-', chr(92) + '-')}\n{action.help}\n"
        for action in ccxd_parser()._actions
        for name in action.option_strings
        if not _mentions(text, name)
    ]
    assert not missing, "\n\n".join(missing)
