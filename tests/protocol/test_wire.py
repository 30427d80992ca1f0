"""ccxd.wire repeats the protocol's names for ccxctl run's fast path: each one as ccxd.protocol defines it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ccxd import protocol, wire
from ccxd.protocol import nodes


def test_the_method_and_notification_names_are_the_protocols() -> None:
    assert {wire.JOB_START, wire.JOB_SUBSCRIBE, wire.JOB_CANCEL} <= set(protocol.METHODS)
    assert protocol.METHODS[wire.JOB_CANCEL][0] is protocol.JobRef
    assert protocol.NOTIFICATIONS[wire.JOB_OUTPUT] is protocol.OutputChunk
    assert protocol.NOTIFICATIONS[wire.JOB_FINISHED] is protocol.JobFinished
    assert protocol.NOTIFICATIONS[wire.JOB_RETRY] is protocol.JobRetry
    hooks = {name for name, kind in protocol.NOTIFICATIONS.items() if kind is protocol.HookEvent}
    assert hooks == {name for name in protocol.NOTIFICATIONS if name.startswith(wire.HOOK_PREFIX)}
    assert hooks


def test_the_codes_limits_and_patterns_are_the_protocols() -> None:
    assert wire.JSONRPC_VERSION == protocol.JSONRPC_VERSION
    assert wire.INVALID_PARAMS == protocol.ErrorCode.INVALID_PARAMS
    assert wire.TIMEOUT_EXIT_CODE == protocol.TIMEOUT_EXIT_CODE
    assert wire.STREAMS == protocol.STREAMS
    assert wire.OUTPUT_FRAME_MAGIC == protocol.OUTPUT_FRAME_MAGIC
    assert wire.OUTPUT_FRAME_HEAD.size == protocol.OUTPUT_FRAME_HEADER_SIZE
    assert (wire.NODE_NAME_PATTERN, wire.LABEL_PATTERN) == (nodes.NODE_NAME_PATTERN, nodes.LABEL_PATTERN)
    assert wire.MAX_LABELS == nodes.MAX_LABELS


@pytest.mark.parametrize("reason", [None, *protocol.JobReason])
def test_a_jobs_shell_exit_code_is_the_protocols(reason: str | None) -> None:
    for exit_code in (None, 0, 3, 255):
        for signal in (None, 9, 15):
            expected = protocol.shell_exit_code(reason, exit_code, signal)
            assert wire.shell_exit_code(reason, exit_code, signal) == expected


@pytest.mark.parametrize("data", [b"", b"hi\n", bytes(range(256)), b"\xff\xfe not UTF-8"])
def test_an_output_frame_gives_back_its_stream_and_exact_bytes(data: bytes) -> None:
    for stream in protocol.STREAMS:
        frame = protocol.encode_output_frame("j1abc", stream, 7, 1 << 40, data)
        code, view = wire.output_frame_data(frame)
        assert (wire.STREAMS[code], bytes(view)) == (stream, data)


def test_what_is_no_output_frame_is_refused() -> None:
    good = protocol.encode_output_frame("job", "stdout", 1, 0, b"x")
    for bad in (good[:10], b"\x02" + good[1:], good[:1] + b"\x02" + good[2:], good[:21]):
        with pytest.raises(ValueError):
            protocol.unpack_output_frame(bad)
        with pytest.raises(ValueError):
            wire.output_frame_data(bad)


def test_importing_it_imports_neither_msgspec_nor_typing() -> None:
    code = "import sys, ccxd.wire; print(sorted({'msgspec', 'typing', 'ccxd.protocol'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
