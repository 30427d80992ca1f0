"""The commented default config that ``ccxctl init`` writes: every setting, at its default."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from ccxd import config_docs
from ccxd.config import Config, load


def test_every_field_has_a_section_and_a_docstring() -> None:
    docs = config_docs.field_docs()
    assert [d.name for d in docs] == [f.name for f in msgspec.structs.fields(Config)]
    assert all(d.doc and d.section for d in docs), [d.name for d in docs if not (d.doc and d.section)]


def test_default_config_file_loads_as_the_defaults_commented_or_not(tmp_path: Path) -> None:
    text = config_docs.default_config_text()
    as_written = tmp_path / "written.toml"
    as_written.write_text(text)
    assert load(as_written, environ={}).config == Config()
    # Uncommenting every setting line changes nothing either: the values shown are the defaults.
    uncommented = re.sub(r"^#(\w+ = )", r"\1", text, flags=re.MULTILINE)
    assert uncommented.count("\n#") < text.count("\n#")
    path = tmp_path / "uncommented.toml"
    path.write_text(uncommented)
    loaded = load(path, environ={})
    assert loaded.config == Config()
    assert {k for k, v in loaded.sources.items() if v != "default"} == {
        d.name for d in config_docs.field_docs() if d.default is not None
    }
