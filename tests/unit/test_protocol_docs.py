"""docs/protocol.md documents every method, notification and error code, with examples that decode."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec
import pytest

from ccxd.protocol import METHODS, NOTIFICATIONS, ErrorCode

DOC = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
SECTION = re.compile(r"^### `([^`]+)`( \(notification\))?\s*$", re.M)


def sections() -> dict[tuple[str, bool], str]:
    found = {}
    matches = list(SECTION.finditer(DOC))
    for m, nxt in zip(matches, [*matches[1:], None], strict=True):
        end = nxt.start() if nxt else len(DOC)
        found[(m.group(1), bool(m.group(2)))] = DOC[m.end() : end]
    return found


def examples(text: str) -> list[dict]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", text, re.S)]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_is_documented_with_examples_that_decode(method: str) -> None:
    body = sections().get((method, False))
    assert body is not None, f"docs/protocol.md has no section for {method}"
    request, response, *_ = examples(body)
    params_type, result_type = METHODS[method]
    assert request["method"] == method and request["jsonrpc"] == "2.0"
    msgspec.convert(request.get("params", {}), params_type)
    msgspec.convert(response["result"], result_type)


@pytest.mark.parametrize("name", sorted(NOTIFICATIONS))
def test_every_notification_is_documented_with_an_example(name: str) -> None:
    body = sections().get((name, True))
    assert body is not None, f"docs/protocol.md has no section for notification {name}"
    for example in examples(body):
        assert example["method"] == name
        msgspec.convert(example["params"], NOTIFICATIONS[name])


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_error_code_is_in_the_table(code: ErrorCode) -> None:
    assert re.search(rf"^\| {int(code)} \|", DOC, re.M), f"error code {int(code)} is not documented"


def test_no_section_documents_a_method_that_does_not_exist() -> None:
    for name, is_notification in sections():
        assert name in (NOTIFICATIONS if is_notification else METHODS), name
