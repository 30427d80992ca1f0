"""The Python side reads the shim's spool and pipe frames with the codes the C shim writes."""

from __future__ import annotations

import re
from pathlib import Path

from ccxd.output import shimformat
from ccxd.protocol import STREAMS

SHIM_SOURCE = Path(__file__).parents[2] / "ccxd" / "supervision" / "shim" / "ccxd-shim.c"


def c_defines() -> dict[str, int]:
    """The integer #defines of the shim's source."""
    text = SHIM_SOURCE.read_text(encoding="utf-8")
    return {m[1]: int(m[2]) for m in re.finditer(r"^#define\s+(\w+)\s+(\d+)\s*$", text, re.M)}


def test_frame_and_record_codes_match_the_c_shim() -> None:
    defines = c_defines()
    assert defines["CUT_STREAM"] == shimformat.CUT_STREAM
    assert defines["EXIT_STREAM"] == shimformat.EXIT_STREAM
    assert defines["DONE_STREAM"] == shimformat.DONE_STREAM
    assert defines["RECORD"] == shimformat.SPOOL_RECORD.size


def test_marker_streams_never_collide_with_output_streams() -> None:
    markers = {shimformat.CUT_STREAM, shimformat.EXIT_STREAM, shimformat.DONE_STREAM}
    assert len(markers) == 3
    assert markers.isdisjoint(range(len(STREAMS)))
