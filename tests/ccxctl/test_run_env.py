"""``ccxctl run``'s job environment: --env KEY=VALUE, --env NAME and --env-file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccxctl.fastpath import parse_run
from ccxctl.runjob import env_from, parse_env


def test_a_bare_name_takes_ccxctls_own_value():
    assert parse_env(["A=1", "TOKEN", "B="], {"TOKEN": "t0k"}) == {"A": "1", "TOKEN": "t0k", "B": ""}


def test_an_unset_name_or_a_nameless_entry_is_an_error_that_does_not_repeat_the_value():
    with pytest.raises(ValueError, match="TOKEN is not set in ccxctl's environment"):
        parse_env(["TOKEN"], {})
    with pytest.raises(ValueError) as caught:
        parse_env(["=hunter2"], {}, "--env-file f")
    assert "hunter2" not in str(caught.value) and str(caught.value).startswith("--env-file f:")


def test_env_files_in_order_then_env_items_over_them(tmp_path: Path):
    one, two = tmp_path / "one.env", tmp_path / "two.env"
    one.write_text("# comment\nA=from one\n\n  # indented comment\nB='kept as is'\nHOME\n")
    two.write_text("A=from two\nC=3\n")
    env = env_from(["C=item"], [str(one), str(two)], {"HOME": "/home/me"})
    assert env == {"A": "from two", "B": "'kept as is'", "HOME": "/home/me", "C": "item"}
    with pytest.raises(ValueError, match="nope.env: No such file or directory"):
        env_from([], [str(tmp_path / "nope.env")], {})


def test_the_fast_path_reads_env_files_and_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    f = tmp_path / "s.env"
    f.write_text("FILE_SECRET=abc\n")
    monkeypatch.setenv("NAME_SECRET", "def")
    opts = parse_run(["--env-file", str(f), "--env", "NAME_SECRET", "-e", "X=1", "echo", "hi"])
    assert opts is not None and opts.env == {"FILE_SECRET": "abc", "NAME_SECRET": "def", "X": "1"}
    monkeypatch.delenv("NAME_SECRET")
    assert parse_run(["--env", "NAME_SECRET", "echo"]) is None  # typer says what is wrong
