"""A git worktree per job (``--worktree``): real daemon, real git, real zsh jobs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ccxd.client import RemoteError
from ccxd.protocol import EmptyParams, OutputChunk, ShutdownParams, WorktreeList, WorktreePruneResult
from ccxd.supervision.shim import find_shim
from tests.conftest import REQUIRE_TOOLS, require_tool

pytestmark = pytest.mark.usefixtures("_git")


@pytest.fixture
def _git() -> None:
    require_tool("git")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_root: Path) -> Path:
    """A repository with one commit: a.txt and sub/s.txt, and an identity of its own."""
    path = tmp_root / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test")
    git(path, "config", "user.email", "test@example.invalid")
    (path / "a.txt").write_text("a\n")
    (path / "sub").mkdir()
    (path / "sub" / "s.txt").write_text("s\n")
    git(path, "add", ".")
    git(path, "commit", "-qm", "first")
    return path


def with_config(daemon_factory, text: str):  # type: ignore[no-untyped-def]
    d = daemon_factory(start=False)
    (d.config_home / "ccxd").mkdir(mode=0o700, exist_ok=True)
    (d.config_home / "ccxd" / "config.toml").write_text(text)
    return d.start()


def ccxctl(daemon, *args: str, fast: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "ccxctl"] + ([] if fast else ["--socket", str(daemon.socket)])
    env = dict(daemon.env, CCXD_SOCKET=str(daemon.socket))
    return subprocess.run([*argv, *args], env=env, capture_output=True, text=True, timeout=60, cwd=cwd)


KEEP = "worktree_remove_merged = false\n"  # the minute's cleanup round never races a test


async def test_two_jobs_on_one_repo_run_at_once_each_in_its_own_tree_and_see_only_their_own_files(
    daemon_factory, repo, tmp_root
):
    d = with_config(daemon_factory, KEEP)
    c = await d.client()
    marks = tmp_root / "marks"
    marks.mkdir()
    # Each writes its file, then waits until both ran that far (so they overlap), then lists what it sees.
    script = (
        f"echo hello > mine-$CCXD_JOB_ID; touch {marks}/$CCXD_JOB_ID; "
        f"until (( $(ls {marks} | wc -l) >= 2 )); do sleep 0.02; done; pwd; ls mine-*"
    )
    jobs = [await c.start(script, cwd=str(repo / "sub"), worktree=True, timeout=30) for _ in range(2)]
    done = await asyncio.gather(*(c.wait(j.id) for j in jobs))
    head = git(repo, "rev-parse", "HEAD")
    paths = set()
    for job in done:
        assert (job.reason, job.exit_code) == ("exited", 0), job
        wt = job.worktree
        assert wt is not None
        assert (wt.branch, wt.base, wt.repo) == (f"ccxd/{job.id}", head, str(repo))
        assert job.cwd == str(Path(wt.path) / "sub")
        assert wt.diffstat is not None
        assert (wt.diffstat.files, wt.diffstat.insertions, wt.diffstat.deletions) == (1, 1, 0)
        assert (wt.diffstat.commits, wt.dirty, wt.head) == (0, True, head)
        paths.add(wt.path)
    assert len(paths) == 2
    for job in done:
        text = (await c.read(job.id)).chunks
        seen = "".join(ch.data for ch in text).split()
        assert seen == [job.cwd, f"mine-{job.id}"]  # its own file only, in its own tree
    assert git(repo, "status", "--porcelain") == ""  # the user's checkout is untouched
    await c.close()


async def test_a_job_that_commits_shows_its_commit_and_a_clean_tree(daemon_factory, repo):
    d = with_config(daemon_factory, KEEP)
    c = await d.client()
    job = await c.start(
        "echo b >> ../a.txt && git commit -qam change", cwd=str(repo / "sub"), worktree=True, timeout=30
    )
    info = await c.wait(job.id)
    assert (info.reason, info.exit_code) == ("exited", 0), info
    wt = info.worktree
    assert wt is not None and wt.diffstat is not None
    assert (wt.diffstat.files, wt.diffstat.insertions, wt.diffstat.commits, wt.dirty) == (1, 1, 1, False)
    assert wt.head == git(repo, "rev-parse", wt.branch) != wt.base
    assert git(repo, "log", "-1", "--format=%s", wt.branch) == "change"
    assert git(repo, "log", "-1", "--format=%s", "main") == "first"
    shown = ccxctl(d, "history", "show", job.id).stdout
    assert f"(branch ccxd/{job.id} from {wt.base[:12]})" in shown
    assert "changes:  1 file(s), +1 -0, 1 commit(s), clean" in shown
    await c.close()


async def test_ccxctl_worktree_list_diff_and_rm_which_refuses_a_dirty_tree_without_force(daemon_factory, repo):
    d = with_config(daemon_factory, KEEP)
    res = ccxctl(d, "run", "--worktree", "--", "printf 'new\\nlines\\n' > n.txt; echo more >> a.txt", cwd=repo)
    assert res.returncode == 0, res.stderr
    listed = json.loads(ccxctl(d, "worktree", "list", "--json").stdout)["worktrees"]
    assert len(listed) == 1
    entry = listed[0]
    job_id = entry["job_id"]
    assert (entry["dirty"], entry.get("running", False), entry["exists"]) == (True, False, True)
    assert entry["branch"] == f"ccxd/{job_id}" and Path(entry["path"]).is_dir()
    table = ccxctl(d, "worktree", "list", fast=False)
    assert job_id in table.stdout and "dirty" in table.stdout
    diff = ccxctl(d, "worktree", "diff", job_id)
    assert diff.returncode == 0, diff.stderr
    assert "+more" in diff.stdout and "+++ b/n.txt" in diff.stdout and "+lines" in diff.stdout
    refused = ccxctl(d, "worktree", "rm", job_id)
    assert refused.returncode != 0
    assert "uncommitted changes" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert Path(entry["path"]).is_dir()
    forced = ccxctl(d, "worktree", "rm", job_id, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "branch deleted" in forced.stdout
    assert not Path(entry["path"]).exists()
    assert git(repo, "branch", "--list", f"ccxd/{job_id}") == ""
    assert json.loads(ccxctl(d, "worktree", "list", "--json").stdout)["worktrees"] == []


async def test_a_cwd_outside_a_repository_is_refused_in_one_line(daemon_factory, tmp_root):
    d = with_config(daemon_factory, KEEP)
    plain = tmp_root / "plain"
    plain.mkdir()
    for fast in (True, False):
        res = ccxctl(d, "run", "--worktree", "--cwd", str(plain), "--", "true", fast=fast)
        assert res.returncode == 2, res
        assert res.stderr.strip() == f"ccxctl: cwd {plain} is not in a git repository"
    c = await d.client()
    with pytest.raises(RemoteError) as err:
        await c.start("true", cwd=str(plain), worktree=True)
    assert err.value.code == -32602
    await c.close()


async def test_the_cleanup_removes_a_merged_worktree_and_keeps_a_dirty_one_and_a_running_one(
    daemon_factory, repo, tmp_root
):
    d = with_config(daemon_factory, KEEP + "[groups.iso]\nworktree = true\n")
    c = await d.client()
    # A group with worktree = true gives its jobs one without asking; a tree in use is never removed.
    release = tmp_root / "release"
    running = await c.start(f"until [[ -e {release} ]]; do sleep 0.02; done", cwd=str(repo), group="iso")
    assert running.worktree is not None and running.worktree.branch == f"ccxd/{running.id}"
    merged = await c.wait(
        (await c.start("echo m > m.txt && git add m.txt && git commit -qm m", cwd=str(repo), worktree=True)).id
    )
    dirty = await c.wait((await c.start("echo d > d.txt", cwd=str(repo), worktree=True)).id)
    assert merged.worktree is not None and dirty.worktree is not None
    git(repo, "merge", "-q", "--ff-only", merged.worktree.branch)
    res: WorktreePruneResult = await c.call("worktree.prune", EmptyParams())
    assert (res.removed, res.kept[merged.id]) == ([], "not due")  # worktree_remove_merged = false
    (d.config_home / "ccxd" / "config.toml").write_text("[groups.iso]\nworktree = true\n")
    assert "worktree_remove_merged=True" in ccxctl(d, "reload").stdout
    res = await c.call("worktree.prune", EmptyParams())
    assert res.removed == [merged.id]
    assert res.kept == {dirty.id: "it has uncommitted changes", running.id: "its job is running"}
    release.touch()
    assert (await c.wait(running.id)).worktree.dirty is False  # type: ignore[union-attr]
    assert not Path(merged.worktree.path).exists()
    assert git(repo, "branch", "--list", merged.worktree.branch) == ""
    assert Path(dirty.worktree.path, "d.txt").read_text() == "d\n"
    assert git(repo, "branch", "--list", dirty.worktree.branch) != ""
    # The same policy, through ccxctl: the ended job's clean tree (no commits: merged) goes now.
    again = ccxctl(d, "worktree", "prune")
    assert again.stdout == f"{running.id}\tremoved\n{dirty.id}\tkept: it has uncommitted changes\n"
    await c.close()


async def test_a_restarted_daemon_adopts_a_worktree_job_and_finishes_its_record(daemon_factory, repo, tmp_root):
    if find_shim() is None:  # only a job under its shim outlives the daemon (as in test_adoption)
        message = "ccxd-shim is not built (python -m ccxd.supervision.shim)"
        if REQUIRE_TOOLS:
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_root / "d"
    d = daemon_factory(root=root, start=False)
    (d.config_home / "ccxd").mkdir(mode=0o700, exist_ok=True)
    (d.config_home / "ccxd" / "config.toml").write_text(KEEP + "job_shim = true\n")
    d.start()
    c = await d.client()
    release = tmp_root / "release"
    job = await c.start(
        f"echo x > x.txt; echo ready; until [[ -e {release} ]]; do sleep 0.02; done",
        cwd=str(repo),
        worktree=True,
        subscribe=True,
    )
    async for ev in c.events(job.id):  # running (its first output) before the daemon leaves it
        if isinstance(ev, OutputChunk):
            break
    await c.call("daemon.shutdown", ShutdownParams(mode="leave"))
    await c.close()
    assert d.proc is not None and d.proc.wait(30) == 0
    d.stop()
    d2 = daemon_factory(root=root)
    c2 = await d2.client()
    listed: WorktreeList = await c2.call("worktree.list", EmptyParams())
    assert [(w.job_id, w.running) for w in listed.worktrees] == [(job.id, True)]
    release.touch()
    info = await c2.wait(job.id)
    assert info.worktree is not None and info.worktree.diffstat is not None
    assert (info.worktree.branch, info.worktree.diffstat.files, info.worktree.dirty) == (f"ccxd/{job.id}", 1, True)
    await c2.close()


async def test_ccxctl_claude_worktree_runs_claude_in_a_worktree_of_the_cwd(daemon_factory, repo, tmp_root):
    # A script named claude plays the CLI: it writes a file where it runs and prints a stream-json result.
    fake = tmp_root / "bin" / "claude"
    fake.parent.mkdir()
    result = {"type": "result", "subtype": "success", "is_error": False, "result": "done", "session_id": "s"}
    fake.write_text(f"#!/bin/sh\npwd > where.txt\necho '{json.dumps(result)}'\n")
    fake.chmod(0o755)
    d = with_config(daemon_factory, KEEP + f'claude_program = "{fake}"\nclaude_retry = false\n')
    res = ccxctl(d, "claude", "--worktree", "fix it", cwd=repo / "sub")
    assert (res.returncode, res.stdout) == (0, "done\n"), res.stderr
    (entry,) = json.loads(ccxctl(d, "worktree", "list", "--json").stdout)["worktrees"]
    c = await d.client()
    info = await c.get(entry["job_id"])
    assert info.worktree is not None and info.worktree.diffstat is not None
    assert info.cwd == str(Path(entry["path"]) / "sub")
    assert Path(info.cwd, "where.txt").read_text() == info.cwd + "\n"
    assert (info.worktree.diffstat.files, info.worktree.dirty) == (1, True)
    assert not (repo / "sub" / "where.txt").exists()
    await c.close()


async def test_a_claude_retry_runs_in_the_worktree_of_the_attempt_it_retries(daemon_factory, repo, tmp_root):
    # The first run is overloaded (529), the retry succeeds; both write where they ran.
    fake = tmp_root / "bin" / "claude"
    fake.parent.mkdir()
    count = tmp_root / "runs"
    failed = {"type": "result", "subtype": "success", "is_error": True, "api_error_status": 529,
              "result": "API Error: 529 overloaded", "session_id": "s"}
    ok = {"type": "result", "subtype": "success", "is_error": False, "result": "done", "session_id": "s"}
    fake.write_text(
        f"#!/bin/sh\necho run >> {count}\npwd >> where.txt\n"
        f"if [ $(wc -l < {count}) -eq 1 ]; then echo '{json.dumps(failed)}'; exit 1; fi\n"
        f"echo '{json.dumps(ok)}'\n"
    )
    fake.chmod(0o755)
    config = f'claude_program = "{fake}"\nclaude_retry_backoff_base = 0.1\nclaude_retry_jitter = 0\n'
    d = with_config(daemon_factory, KEEP + config)
    c = await d.client()
    first = await c.start(None, kind="claude", prompt="fix it", cwd=str(repo), worktree=True)
    first = await c.wait(first.id)
    assert first.retried_by is not None, first
    second = await c.wait(first.retried_by)
    assert (second.reason, second.exit_code) == ("exited", 0), second
    assert first.worktree is not None and second.worktree is not None
    assert second.cwd == first.cwd == first.worktree.path
    assert second.worktree.branch == first.worktree.branch
    assert Path(first.cwd, "where.txt").read_text() == f"{first.cwd}\n" * 2
    assert second.worktree.diffstat is not None and second.worktree.diffstat.insertions == 2
    await c.close()
