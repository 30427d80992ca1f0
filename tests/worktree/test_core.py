"""The worktree core: branch and directory names, git output parsing, the cleanup decision."""

from __future__ import annotations

from ccxd.worktree.core import Decision, branch_name, decide, dirty, parse_numstat, repo_dir_name


def test_names_a_branch_after_the_job_and_a_directory_after_the_repository():
    assert branch_name("0abc") == "ccxd/0abc"
    one, other = repo_dir_name("/home/u/src/app"), repo_dir_name("/home/u/work/app")
    assert one.startswith("app-") and other.startswith("app-") and one != other
    assert repo_dir_name("/home/u/src/app/") == one


def test_numstat_sums_lines_and_counts_binary_files_as_files_only():
    out = b"2\t0\ta.txt\x00-\t-\tbin.dat\x001\t0\td/e/f\x000\t1\tsub/tab\tname.txt\x00"
    assert parse_numstat(out) == (4, 3, 1)
    assert parse_numstat(b"") == (0, 0, 0)


def test_status_output_with_anything_in_it_is_dirty():
    assert dirty(b"?? new.txt\x00")
    assert dirty(b" M a.txt\x00")
    assert not dirty(b"")


def _decide(**facts: object) -> Decision:
    base: dict[str, object] = {
        "running": False,
        "exists": True,
        "is_dirty": False,
        "merged": False,
        "age_days": 1.0,
        "keep_days": 7.0,
        "remove_merged": True,
    }
    return decide(**{**base, **facts})  # type: ignore[arg-type]


def test_cleanup_keeps_running_and_dirty_trees_whatever_else_holds():
    assert _decide(running=True, merged=True, age_days=99) == Decision(False, "its job is running")
    assert _decide(is_dirty=True, merged=True, age_days=99) == Decision(False, "it has uncommitted changes")


def test_cleanup_removes_merged_or_expired_clean_trees_and_forgets_gone_ones():
    assert _decide(merged=True) == Decision(True, "its branch is merged")
    assert _decide(merged=True, remove_merged=False).remove is False
    assert _decide(age_days=8) == Decision(True, "older than 7 days")
    assert _decide(age_days=8, keep_days=None).remove is False
    assert _decide(exists=False) == Decision(True, "its directory is gone")
    assert _decide() == Decision(False, "not due")
