from ccxd.protocol import JobFinished, OutputChunk


async def test_run_echo_reports_output_and_exit_code(client):
    out = b""
    finished = None
    async for ev in client.run("echo hello; exit 3"):
        if isinstance(ev, OutputChunk):
            out += ev.raw()
        elif isinstance(ev, JobFinished):
            finished = ev.job
    assert out == b"hello\n"
    assert finished is not None and finished.exit_code == 3 and finished.reason == "exited"
