"""The Claude retry policy, as plain function calls (no daemon, no clock)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccxd.claude.models import MODEL_OUTPUT_LIMITS, UNKNOWN_MODEL, canonical_model, output_limits
from ccxd.claude.retry_policy import (
    CONCISION_LEVELS,
    Failure,
    RetrySettings,
    add_concision,
    backoff_delay,
    decide,
)

NOW = 1_800_000_000.0
SETTINGS = RetrySettings()


def run(failure: Failure, settings: RetrySettings = SETTINGS, seed: int = 1) -> object:
    return decide(settings, failure, now=NOW, rng=random.Random(seed))


# -- models -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "canonical"),
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-opus-4-1@20250805", "claude-opus-4-1"),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"),
        ("claude-opus-4-6[1m]", "claude-opus-4-6"),
        ("claude-opus-4-7", "claude-opus-4-7"),
    ],
)
def test_model_names_are_canonicalised(model: str, canonical: str) -> None:
    assert canonical_model(model) == canonical
    assert output_limits(model) == MODEL_OUTPUT_LIMITS[canonical]


def test_unknown_model_and_config_override() -> None:
    assert output_limits("sonnet") == UNKNOWN_MODEL
    assert output_limits(None) == UNKNOWN_MODEL
    assert output_limits("claude-new-9", {"claude-new-9": 200_000}).maximum == 200_000
    assert output_limits("claude-opus-4-1", {"claude-opus-4-1": 16000}) == (16000, 16000)


def test_every_table_entry_is_consistent() -> None:
    for limits in MODEL_OUTPUT_LIMITS.values():
        assert 0 < limits.default <= limits.maximum


# -- token limit ----------------------------------------------------------------


def test_token_limit_raises_max_output_tokens_then_concision() -> None:
    first = run(Failure(error_class="token_limit", model="claude-sonnet-4-5-20250929", token_limit=32000))
    assert first.retry and first.delay == 0
    assert first.max_output_tokens == 64000 and first.concision_level == 0
    # At the model's maximum: ask for concision, keeping the tokens.
    second = run(
        Failure(error_class="token_limit", model="claude-sonnet-4-5", attempt=2, max_output_tokens=64000)
    )
    assert second.retry and second.max_output_tokens == 64000 and second.concision_level == 1
    third = run(
        Failure(
            error_class="token_limit",
            model="claude-sonnet-4-5",
            attempt=3,
            max_output_tokens=64000,
            concision_level=1,
        ),
        RetrySettings(max_attempts=10),
    )
    assert third.concision_level == 2


def test_token_limit_never_above_the_model_maximum() -> None:
    d = run(Failure(error_class="token_limit", model="claude-opus-4-5", max_output_tokens=50000))
    assert d.max_output_tokens == 64000
    # Opus 4.1 cannot go above 32000 at all: straight to concision.
    d = run(Failure(error_class="token_limit", model="claude-opus-4-1", token_limit=32000))
    assert d.max_output_tokens is None and d.concision_level == 1


def test_token_limit_strategies() -> None:
    f = Failure(error_class="token_limit", model="claude-sonnet-4-5", token_limit=32000)
    assert run(f, RetrySettings(token_limit="concise")).concision_level == 1
    assert run(f, RetrySettings(token_limit="concise")).max_output_tokens is None
    assert run(f, RetrySettings(token_limit="raise")).max_output_tokens == 64000
    off = run(f, RetrySettings(token_limit="off"))
    assert not off.retry
    at_max = Failure(error_class="token_limit", model="claude-sonnet-4-5", max_output_tokens=64000)
    d = run(at_max, RetrySettings(token_limit="raise"))
    assert not d.retry and "maximum (64000)" in d.reason


def test_token_limit_gives_up_when_every_concision_level_was_tried() -> None:
    f = Failure(
        error_class="token_limit",
        model="claude-opus-4-1",
        max_output_tokens=32000,
        concision_level=CONCISION_LEVELS,
    )
    d = run(f, RetrySettings(max_attempts=10))
    assert not d.retry and "every concision instruction" in d.reason
    d = run(
        Failure(error_class="token_limit", model="claude-opus-4-1", can_edit_prompt=False),
        RetrySettings(max_attempts=10),
    )
    assert not d.retry and "cannot be changed" in d.reason


def test_token_and_context_limits_never_resume() -> None:
    d = run(Failure(error_class="token_limit", model="claude-sonnet-4-5", resumes_session=True))
    assert not d.retry and "resumes a session" in d.reason
    assert not run(Failure(error_class="context_full")).retry


@pytest.mark.parametrize("cls", ["max_turns", "max_budget", "auth", "no_result", "unknown_error"])
def test_final_classes_are_not_retried(cls: str) -> None:
    assert not run(Failure(error_class=cls)).retry


def test_api_error_4xx_is_not_retried_5xx_is() -> None:
    assert not run(Failure(error_class="api_error", status=400)).retry
    assert run(Failure(error_class="api_error", status=500)).retry


# -- backoff --------------------------------------------------------------------


def test_backoff_grows_and_respects_the_cli_and_retry_after() -> None:
    s = RetrySettings(backoff_base=10, backoff_max=1000, jitter=0)
    delays = [
        run(
            Failure(error_class="rate_limit", attempt=n),
            RetrySettings(max_attempts=99, backoff_base=10, backoff_max=1000, jitter=0),
        ).delay
        for n in (1, 2, 3)
    ]
    assert delays == [10, 20, 40]
    # The CLI already waited 30 s before giving up: ours starts beyond it.
    assert backoff_delay(s, Failure(error_class="overloaded", cli_last_delay=30), random.Random(0)) == 60
    # retry-after is a floor even with jitter.
    jittery = RetrySettings(backoff_base=10, jitter=1.0)
    assert backoff_delay(jittery, Failure(error_class="rate_limit", retry_after=9), random.Random(0)) >= 9


def test_usage_limit_waits_for_the_reset_and_blocks_everyone() -> None:
    d = run(Failure(error_class="usage_limit", resets_at=NOW + 600))
    assert d.retry and d.wait_reason == "usage limit"
    assert d.block_until == NOW + 600 + SETTINGS.usage_limit_margin
    assert d.delay == pytest.approx(600 + SETTINGS.usage_limit_margin)
    far = run(Failure(error_class="usage_limit", resets_at=NOW + 7 * 3600))
    assert not far.retry and "usage_limit_max_wait" in far.reason
    unknown = run(Failure(error_class="usage_limit"))
    assert unknown.retry and unknown.delay == SETTINGS.backoff_max
    past = run(Failure(error_class="usage_limit", resets_at=NOW - 100))
    assert past.retry and past.delay == SETTINGS.usage_limit_margin


def test_stall_reruns_at_once_and_attempts_are_capped() -> None:
    d = run(Failure(error_class="stall"))
    assert d.retry and d.delay == 0 and d.attempt == 2
    assert not run(Failure(error_class="stall", attempt=4)).retry
    assert not run(Failure(error_class="stall"), RetrySettings(enabled=False)).retry


def test_merged_overrides() -> None:
    s = SETTINGS.merged({"max_attempts": 2, "jitter": None})
    assert s.max_attempts == 2 and s.jitter == SETTINGS.jitter
    assert SETTINGS.merged({}) is SETTINGS


def test_concision_escalates_from_the_original_prompt() -> None:
    assert add_concision("Write an essay.", 0) == "Write an essay."
    texts = [add_concision("Write an essay.", n, 32000) for n in (1, 2, 3)]
    assert all(t.startswith("Write an essay.\n\n") for t in texts)
    assert "6400 words" in texts[1]
    assert len(set(texts)) == 3


# -- properties -------------------------------------------------------------------

classes = st.sampled_from(
    [
        "token_limit",
        "rate_limit",
        "overloaded",
        "usage_limit",
        "context_full",
        "stall",
        "network",
        "api_error",
        "auth",
    ]
)
models = st.sampled_from([None, "sonnet", *MODEL_OUTPUT_LIMITS])


@given(
    cls=classes,
    model=models,
    attempt=st.integers(1, 8),
    tokens=st.none() | st.integers(1, 300_000),
    limit=st.none() | st.integers(1, 300_000),
    level=st.integers(0, CONCISION_LEVELS),
    resumes=st.booleans(),
    resets=st.none() | st.floats(-1e5, 1e6),
    retry_after=st.none() | st.floats(0, 1e5),
    cli_delay=st.none() | st.floats(0, 1e5),
    status=st.none() | st.integers(400, 599),
    seed=st.integers(0, 2**32),
    max_attempts=st.integers(1, 6),
    jitter=st.floats(0, 1),
)
def test_decisions_stay_within_bounds(
    cls: str,
    model: str | None,
    attempt: int,
    tokens: int | None,
    limit: int | None,
    level: int,
    resumes: bool,
    resets: float | None,
    retry_after: float | None,
    cli_delay: float | None,
    status: int | None,
    seed: int,
    max_attempts: int,
    jitter: float,
) -> None:
    settings = RetrySettings(max_attempts=max_attempts, jitter=jitter)
    f = Failure(
        error_class=cls,
        model=model,
        attempt=attempt,
        max_output_tokens=tokens,
        token_limit=limit,
        concision_level=level,
        resumes_session=resumes,
        resets_at=None if resets is None else NOW + resets,
        retry_after=retry_after,
        cli_last_delay=cli_delay,
        status=status,
    )
    d = decide(settings, f, now=NOW, rng=random.Random(seed))
    if not d.retry:
        assert d.reason
        return
    assert attempt < max_attempts and d.attempt == attempt + 1
    assert cls not in ("context_full", "auth")
    assert d.delay >= 0
    if cls == "token_limit":
        assert not resumes
        assert d.delay == 0
        maximum = output_limits(model).maximum
        if d.max_output_tokens is not None and d.max_output_tokens != tokens:
            assert d.max_output_tokens <= maximum
        assert d.concision_level <= CONCISION_LEVELS
    elif cls == "usage_limit":
        assert d.block_until is not None and d.block_until >= NOW
        if resets is not None:
            assert d.block_until >= NOW + resets
            assert resets <= settings.usage_limit_max_wait
    elif cls != "stall":
        assert d.delay <= settings.backoff_max
        if retry_after is not None:
            assert d.delay >= min(retry_after, settings.backoff_max) - 1e-3


def test_attempts_drop_a_chosen_session_id_and_edit_the_prompt() -> None:
    from ccxd.claude.retry_runner import edit_prompt, without_session_id
    from ccxd.protocol import StartParams

    argv = ["claude", "--session-id", "abc", "-p", "Write.", "--session-id=def", "--verbose"]
    p = without_session_id(StartParams(command=argv))
    assert p.command == ["claude", "-p", "Write.", "--verbose"]
    edited = edit_prompt(p, lambda t: t + " Briefly.")
    assert edited is not None and edited.command == ["claude", "-p", "Write. Briefly.", "--verbose"]
    stdin = StartParams(command=["claude", "-p", "--verbose"], input="From stdin.")
    edited = edit_prompt(stdin, str.upper)
    assert edited is not None and edited.input == "FROM STDIN."
    # A recognised shell string: only its prompt word changes (re-quoted).
    shell = edit_prompt(StartParams(command="claude -p hi --model m"), str.upper)
    assert shell is not None and shell.command == "claude -p HI --model m"
    assert edit_prompt(StartParams(command="claude -p hi", kind="shell"), str.upper) is None
    assert edit_prompt(StartParams(command="claude -p hi | cat"), str.upper) is None
    piped = edit_prompt(StartParams(command="claude -p --model m", input="From stdin."), str.upper)
    assert piped is not None and piped.input == "FROM STDIN." and piped.command == "claude -p --model m"
