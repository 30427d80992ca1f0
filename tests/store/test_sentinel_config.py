"""redis_url through Sentinel: what is accepted, what is refused and why, and no password shown."""

from __future__ import annotations

import pytest

from ccxd.config import ConfigError, load, render
from ccxd.redis_url import parse_sentinel
from ccxd.store.connect import describe_target

URL = "redis+sentinel://ccxd:s3cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/jobs?sentinel_password=sent1nel&db=2"


def test_a_sentinel_url_names_the_sentinels_service_and_both_credentials() -> None:
    target = parse_sentinel(URL)
    assert target.sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380)]
    assert (target.service, target.db, target.tls) == ("jobs", 2, False)
    assert (target.username, target.password, target.sentinel_password) == ("ccxd", "s3cret", "sent1nel")
    assert parse_sentinel("rediss+sentinel://u:p@h:1/s?sentinel_password=x").tls
    shown = describe_target(URL)
    assert shown == "redis (sentinel jobs via 10.0.0.1:26379,10.0.0.2:26379,[::1]:26380)"


def test_the_config_accepts_it_and_never_shows_either_password() -> None:
    loaded = load(None, environ={"CCXD_REDIS_URL": URL})
    text = render(loaded)
    assert "s3cret" not in text and "sent1nel" not in text
    assert (
        "redis+sentinel://ccxd:***@10.0.0.1:26379,10.0.0.2,[::1]:26380/jobs?sentinel_password=***&db=2"
        in text
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://u:p@h:1?sentinel_password=x", "service's name as the path"),
        ("redis+sentinel://u:p@/svc?sentinel_password=x", "no sentinel host:port"),
        ("redis+sentinel://u:p@h:99999/svc?sentinel_password=x", "'h:99999' has no valid port"),
        ("redis+sentinel://u:p@h:1/svc?sentinel_password=x&master=m", "unknown option 'master'"),
        ("redis+sentinel://u:p@h:1/svc?sentinel_password=x&db=two", "db must be a number"),
    ],
)
def test_a_malformed_sentinel_url_is_refused_in_one_line_saying_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load(None, environ={"CCXD_REDIS_URL": url})
    message = str(refused.value)
    assert says in message and "expected redis+sentinel://USER:PASSWORD@HOST:PORT" in message
    assert "\n" not in message and ":p@" not in message and "password=x" not in message


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://h:1/svc?sentinel_password=x",  # the primary takes anyone
        "redis+sentinel://u:p@h:1/svc",  # the sentinels take anyone, and could name any primary
    ],
)
def test_a_sentinel_url_without_both_passwords_is_refused_unless_allowed(url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load(None, environ={"CCXD_REDIS_URL": url})
    message = str(refused.value)
    assert "lacks a password for the primary or for the sentinels" in message
    assert "redis_allow_unauthenticated = true" in message
    allowed = load(None, environ={"CCXD_REDIS_URL": url, "CCXD_REDIS_ALLOW_UNAUTHENTICATED": "1"})
    assert allowed.config.redis_url == url


def test_tls_files_go_with_rediss_sentinel_only() -> None:
    tls = {"CCXD_REDIS_TLS_CA_FILE": "/ca.pem"}
    with pytest.raises(ConfigError, match="need a rediss:// redis_url"):
        load(None, environ={"CCXD_REDIS_URL": URL, **tls})
    url = URL.replace("redis+sentinel", "rediss+sentinel")
    assert load(None, environ={"CCXD_REDIS_URL": url, **tls}).config.redis_tls_ca_file == "/ca.pem"
