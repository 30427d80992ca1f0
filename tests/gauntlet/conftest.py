"""Fixtures for the gauntlet: a test-owned redis-server (shared with tests/store)."""

from tests.store.conftest import redis_server  # noqa: F401  (a fixture, used by name)
