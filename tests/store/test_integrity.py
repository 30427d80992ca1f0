"""The store's seals, its key file and the redis_url rules (issue 19: Redis is input, not authority)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ccxd.config import ConfigError, load, redact_url, redis_auth_missing, render
from ccxd.store import integrity
from ccxd.store.keyfile import load_or_create_key

KEY = bytes(range(32))


def test_a_seal_holds_only_for_the_same_key_context_and_bytes() -> None:
    mac = integrity.seal(KEY, "attempt\0n1", b'{"job_id":"a"}')
    assert integrity.verify(KEY, "attempt\0n1", b'{"job_id":"a"}', mac)
    assert not integrity.verify(KEY, "attempt\0n1", b'{"job_id":"b"}', mac)
    assert not integrity.verify(KEY, "attempt\0n2", b'{"job_id":"a"}', mac)  # another node's
    assert not integrity.verify(KEY, "block\0n1", b'{"job_id":"a"}', mac)  # another kind
    assert not integrity.verify(bytes(32), "attempt\0n1", b'{"job_id":"a"}', mac)
    assert not integrity.verify(KEY, "attempt\0n1", b'{"job_id":"a"}', "")
    # The context's length is part of the message: no sliding bytes between context and body.
    assert integrity.seal(KEY, "ab", b"c") != integrity.seal(KEY, "a", b"bc")


def test_the_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "store.key"
    key = load_or_create_key(path)
    assert len(key) == integrity.KEY_BYTES
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_or_create_key(path) == key


def test_a_key_others_could_read_or_that_is_a_link_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.key"
    load_or_create_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="open to others .mode 0644. and may have leaked"):
        load_or_create_key(path)
    os.chmod(path, 0o600)
    link = tmp_path / "link.key"
    link.symlink_to(path)
    with pytest.raises(PermissionError, match="cannot read the store key"):
        load_or_create_key(link)
    (tmp_path / "bad.key").write_text("not hex\n")
    os.chmod(tmp_path / "bad.key", 0o600)
    with pytest.raises(PermissionError, match="is not a key"):
        load_or_create_key(tmp_path / "bad.key")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://ccxd:s3cret@h:6379/0", "redis://ccxd:***@h:6379/0"),
        ("redis://:s3cret@h", "redis://:***@h"),
        ("rediss://h:6380?password=s3cret&db=2", "rediss://h:6380?password=***&db=2"),
        ("unix:///run/r.sock?db=1", "unix:///run/r.sock?db=1"),
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
    ],
)
def test_a_redis_password_is_never_shown(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_which_urls_lack_authentication() -> None:
    assert redis_auth_missing("redis://127.0.0.1:6379")
    assert redis_auth_missing("redis://ccxd@127.0.0.1:6379")  # a user without a password
    assert redis_auth_missing("rediss://127.0.0.1:6380")
    assert not redis_auth_missing("rediss://127.0.0.1:6380", tls_cert_file="/c.pem")
    assert not redis_auth_missing("redis://ccxd:pw@127.0.0.1:6379")
    assert not redis_auth_missing("redis://127.0.0.1:6379?password=pw")
    assert not redis_auth_missing("unix:///run/redis.sock")  # judged at start, by who reaches it


def test_the_config_refuses_a_password_less_tcp_redis_in_one_line(tmp_path: Path) -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:6379"}
    with pytest.raises(ConfigError) as refused:
        load(None, environ=env)
    message = str(refused.value)
    assert "\n" not in message and "$REDIS_URL" in message and "redis_allow_unauthenticated = true" in message
    loaded = load(None, environ={**env, "CCXD_REDIS_ALLOW_UNAUTHENTICATED": "true"})
    assert loaded.config.redis_allow_unauthenticated
    with pytest.raises(ConfigError, match="need a rediss:// redis_url"):
        load(None, environ={"CCXD_REDIS_URL": "redis://u:p@h", "CCXD_REDIS_TLS_CA_FILE": "/ca.pem"})


def test_print_config_hides_the_password() -> None:
    loaded = load(None, environ={"CCXD_REDIS_URL": "redis://ccxd:hunter2@10.0.0.5:6379/3"})
    text = render(loaded)
    assert "hunter2" not in text and 'redis_url = "redis://ccxd:***@10.0.0.5:6379/3"' in text
