"""Environment values that unset a setting (sans-I/O: ``config.load`` with an explicit environ)."""

from __future__ import annotations

import pytest

from ccxd import config


@pytest.mark.parametrize("word", ["none", "None", "null", ""])
@pytest.mark.parametrize("key", ["default_timeout", "history_max_jobs", "ws_ping_interval", "estimate_bootstrap"])
def test_env_none_unsets_a_nullable_setting(key: str, word: str) -> None:
    loaded = config.load(environ={f"CCXD_{key.upper()}": word}, path=None)
    assert getattr(loaded.config, key) is None
    assert loaded.sources[key] == f"$CCXD_{key.upper()}"


def test_env_none_is_refused_for_a_setting_that_cannot_be_unset() -> None:
    with pytest.raises(config.ConfigError, match="max_concurrent_jobs"):
        config.load(environ={"CCXD_MAX_CONCURRENT_JOBS": "none"}, path=None)
