"""The Claude CLI fixtures (the pinned CLI, the fake API, a private HOME) for the end-to-end test."""

from tests.claude.conftest import claude_bin, claude_home, fake_api

__all__ = ["claude_bin", "claude_home", "fake_api"]
