"""ccxd.client.jsonlite reads and writes what json does, without importing it."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccxd.client import jsonlite

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@given(values)
def test_what_it_writes_is_what_json_writes_and_reads_back(value: Any) -> None:
    text = jsonlite.dumps(value)
    assert text == json.dumps(value, separators=(",", ":"))
    assert jsonlite.loads(text.encode()) == json.loads(text) == value


@given(values, st.sampled_from(["", " ", "\n", "\t\r\n "]))
def test_it_reads_what_msgspec_writes_with_any_json_whitespace_around(value: Any, space: str) -> None:
    data = space.encode() + msgspec.json.encode(value) + space.encode()
    assert jsonlite.loads(data) == json.loads(data) == value


def test_a_float_that_is_not_finite_is_null_as_msgspec_writes_it() -> None:
    for value in (math.inf, -math.inf, math.nan):
        assert (
            jsonlite.dumps({"timeout": value})
            == '{"timeout":null}'
            == msgspec.json.encode({"timeout": value}).decode()
        )
    assert jsonlite.loads(b"[NaN, Infinity, -Infinity]")[1:] == [math.inf, -math.inf]


@pytest.mark.parametrize(
    "bad", [b"", b"  ", b'{"a":1} x', b'{"a":}', b"[1,2", b"\xff\xfe", b"nul", b"{'a': 1}"]
)
def test_what_is_not_one_json_value_is_a_value_error(bad: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(bad)
    with pytest.raises(ValueError):
        jsonlite.loads(bad)


def test_what_json_cannot_hold_is_a_type_error() -> None:
    for bad in ({1: "a"}, {"a": {1, 2}}, b"bytes"):
        with pytest.raises(TypeError):
            jsonlite.dumps(bad)


def test_it_imports_neither_json_nor_re() -> None:
    code = "import sys, ccxd.client.jsonlite as j; j.loads(j.dumps({'a': [1.5, None]})); print(sorted({'json', 're', 'enum'} & set(sys.modules)))"
    repo = Path(jsonlite.__file__).resolve().parents[2]
    run = [sys.executable, "-S", "-c", code]
    out = subprocess.run(run, capture_output=True, text=True, check=True, cwd=repo)
    assert out.stdout.strip() == "[]"
