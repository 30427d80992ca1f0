"""Secrets redacted by name and by value (ccxd/redact.py), without I/O."""

from __future__ import annotations

import pytest

from ccxd.redact import REDACTED, is_secret_name, redact_argv, redact_text, secret_values


@pytest.mark.parametrize(
    "name",
    [
        "ANTHROPIC_API_KEY",
        "GH_TOKEN",
        "DB_PASS",
        "PGPASSWORD",
        "MYSQL_PWD",
        "GITHUB_PAT",
        "SLACK_WEBHOOK_URL",
        "AWS_SECRET_ACCESS_KEY",
        "SSH_KEY",
        "aws_session_token",
        "NPM_AUTH",
        "COOKIE_JAR_SECRET",
    ],
)
def test_secret_looking_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    ["PATH", "HOME", "PWD", "OLDPWD", "LANG", "CLAUDE_CODE_MAX_OUTPUT_TOKENS", "GIT_AUTHOR_NAME", "PATH_X"],
)
def test_ordinary_names(name):
    assert not is_secret_name(name)


def test_secret_values_are_those_of_secret_names_long_enough_to_hunt():
    env = {"API_KEY": "sk-verysecret", "GH_TOKEN": "true", "HOME": "/home/alice", "PWD": "/srv/project"}
    assert secret_values(env) == {"sk-verysecret"}


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("curl https://u:hunter2@example.com/x", "curl https://u:***@example.com/x"),
        ("git clone https://example.com/a/b", "git clone https://example.com/a/b"),
        ("psql postgres://app:p%40ss@db:5432/x", "psql postgres://app:***@db:5432/x"),
        ("mysql --password=abc -u x", "mysql --password=*** -u x"),
        ("tool --token abc --api-key 'a b'; next", "tool --token *** --api-key ***; next"),
        ('API_KEY=sk-x ./deploy && GH_PAT="a b" gh', "API_KEY=*** ./deploy && GH_PAT=*** gh"),
        ("sort --key=2 f; A=1 B=two", "sort --key=2 f; A=1 B=two"),
        ("echo $API_KEY ${GH_TOKEN}", "echo $API_KEY ${GH_TOKEN}"),
    ],
)
def test_redact_text_patterns(text, shown):
    assert redact_text(text) == shown


def test_values_are_redacted_wherever_they_appear():
    secrets = secret_values({"API_KEY": "sk-verysecret", "LONGER_KEY": "sk-verysecret-2"})
    assert redact_text("a sk-verysecret-2 b sk-verysecret/c", secrets) == f"a {REDACTED} b {REDACTED}/c"


def test_redact_argv_hides_the_word_after_a_secret_option():
    argv = ["mysql", "--password", "abc", "-h", "db", "--token=t0k", "x-sk-verysecret"]
    assert redact_argv(argv, frozenset({"sk-verysecret"})) == [
        "mysql",
        "--password",
        REDACTED,
        "-h",
        "db",
        "--token=***",
        "x-***",
    ]
