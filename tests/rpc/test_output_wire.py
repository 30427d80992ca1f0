"""The daemon's job.output lines start with the prefix the client decodes in one pass."""

import msgspec

from ccxd.output.log import Chunk
from ccxd.protocol import OUTPUT_NOTIFICATION_PREFIX, OutputNotification
from ccxd.rpc.subscription import encode_chunk


def test_output_lines_take_the_clients_single_pass_path() -> None:
    for data in (b"text\n", b"\xff\xfe binary"):
        wire = encode_chunk("job1", Chunk(3, 1, 100, data))
        assert wire.startswith(OUTPUT_NOTIFICATION_PREFIX)
        chunk = msgspec.json.decode(wire, type=OutputNotification).params
        assert (chunk.job_id, chunk.stream, chunk.seq, chunk.offset, chunk.raw()) == ("job1", "stderr", 3, 100, data)
