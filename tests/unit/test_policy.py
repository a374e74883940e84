"""Retry policies: a failed attempt in, a decision out (retry at T, or give up and why)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wfray.domain.policy import FailureInfo, RetryDecision, RetryPolicy

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
BOOM = FailureInfo("builtins.RuntimeError", "boom")


def after(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


# -- backoff -----------------------------------------------------------------------------------


def test_backoff_doubles_from_the_initial_delay() -> None:
    policy = RetryPolicy(initial_delay_s=1, backoff=2, max_delay_s=1000)
    assert [policy.delay_s(n) for n in range(1, 7)] == [1, 2, 4, 8, 16, 32]


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(initial_delay_s=1.5, backoff=3, max_delay_s=10)
    assert [policy.delay_s(n) for n in range(1, 6)] == [1.5, 4.5, 10, 10, 10]


def test_backoff_of_one_is_a_constant_delay() -> None:
    policy = RetryPolicy(initial_delay_s=7, backoff=1)
    assert {policy.delay_s(n) for n in range(1, 20)} == {7}


def test_decide_retries_at_now_plus_the_backoff_until_attempts_run_out() -> None:
    policy = RetryPolicy(max_attempts=4, initial_delay_s=2, backoff=3)
    decisions = [policy.decide(BOOM, n, 0, NOW) for n in range(1, 5)]
    assert [d.retry_at for d in decisions] == [after(2), after(6), after(18), None]
    assert [d.reason for d in decisions] == [
        "backoff",
        "backoff",
        "backoff",
        "gave up after 4 attempts",
    ]
    assert [d.give_up for d in decisions] == [False, False, False, True]


def test_one_attempt_means_no_retry() -> None:
    decision = RetryPolicy(max_attempts=1).decide(BOOM, 1, 0, NOW)
    assert decision == RetryDecision(None, "gave up after 1 attempts")


@settings(max_examples=100, deadline=None)
@given(
    initial=st.floats(0, 100),
    backoff=st.floats(1, 10),
    cap=st.floats(0, 3600),
    failed=st.integers(1, 100_000),
)
def test_delay_never_exceeds_the_cap_however_many_attempts(
    initial: float, backoff: float, cap: float, failed: int
) -> None:
    # "retry every minute for a week" is max_attempts=10_080, max_delay_s=60: the backoff
    # term overflows a float long before, and must still give the cap
    policy = RetryPolicy(
        max_attempts=failed + 1, initial_delay_s=initial, backoff=backoff, max_delay_s=cap
    )
    assert 0 <= policy.delay_s(failed) <= cap
    decision = policy.decide(BOOM, failed, 0, NOW)
    assert decision.retry_at is not None
    assert NOW <= decision.retry_at <= after(cap)


def test_retry_forever_policy_does_not_overflow() -> None:
    # every minute for a week: 2.0 ** 10_000 is not a float
    policy = RetryPolicy(max_attempts=10_080, initial_delay_s=1, max_delay_s=60)
    assert policy.delay_s(10_000) == 60
    assert policy.decide(BOOM, 10_000, 0, NOW).retry_at == after(60)
    assert RetryPolicy(initial_delay_s=0, max_delay_s=60).delay_s(10_000) == 0


# -- jitter ------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    jitter=st.floats(0, 1),
    failed=st.integers(1, 12),
    seed=st.integers(0, 2**32),
)
def test_jitter_stays_within_its_fraction_below_the_backoff(
    jitter: float, failed: int, seed: int
) -> None:
    policy = RetryPolicy(initial_delay_s=1, backoff=2, max_delay_s=600, jitter=jitter)
    base = RetryPolicy(initial_delay_s=1, backoff=2, max_delay_s=600).delay_s(failed)
    delay = policy.delay_s(failed, random.Random(seed))
    assert base * (1 - jitter) - 1e-9 <= delay <= base + 1e-9


def test_jitter_with_a_seeded_random_is_reproducible_and_spread() -> None:
    policy = RetryPolicy(initial_delay_s=10, jitter=0.5)
    first = [policy.delay_s(1, random.Random(seed)) for seed in range(50)]
    again = [policy.delay_s(1, random.Random(seed)) for seed in range(50)]
    assert first == again
    assert all(5 <= d <= 10 for d in first)
    assert max(first) - min(first) > 3  # actually spread, not constant


def test_decide_applies_jitter_from_the_given_random() -> None:
    policy = RetryPolicy(initial_delay_s=10, jitter=1)
    rng, same = random.Random(42), random.Random(42)
    decision = policy.decide(BOOM, 1, 0, NOW, rng)
    assert decision.retry_at == after(10 * same.random())


def test_zero_jitter_or_zero_delay_draws_nothing() -> None:
    class NoRandom(random.Random):
        def random(self) -> float:
            raise AssertionError("drew a random number")

    assert RetryPolicy(initial_delay_s=3).delay_s(1, NoRandom()) == 3
    assert RetryPolicy(initial_delay_s=0, jitter=0.5).delay_s(1, NoRandom()) == 0


# -- what may be retried -----------------------------------------------------------------------


def test_non_retryable_flag_gives_up_at_once() -> None:
    failure = FailureInfo("wfray.domain.errors.NonRetryableError", "card declined", retryable=False)
    decision = RetryPolicy(max_attempts=10).decide(failure, 1, 0, NOW)
    assert decision.give_up
    assert decision.reason == "wfray.domain.errors.NonRetryableError is not retryable"


@pytest.mark.parametrize(
    ("listed", "error_type"),
    [
        ("ValueError", "builtins.ValueError"),  # bare name matches any module
        ("builtins.ValueError", "builtins.ValueError"),
        ("shop.errors.Declined", "shop.errors.Declined"),
        ("Declined", "shop.errors.Declined"),
    ],
)
def test_listed_error_types_are_not_retried(listed: str, error_type: str) -> None:
    policy = RetryPolicy(max_attempts=10, non_retryable=(listed,))
    decision = policy.decide(FailureInfo(error_type, "no"), 1, 0, NOW)
    assert decision == RetryDecision(None, f"{error_type} is not retryable")


@pytest.mark.parametrize(
    ("listed", "error_type"),
    [
        ("ValueError", "builtins.MyValueError"),  # a suffix of the name is not the name
        ("other.Declined", "shop.errors.Declined"),  # a qualified name must match in full
        ("errors.Declined", "shop.errors.Declined"),
    ],
)
def test_other_error_types_are_still_retried(listed: str, error_type: str) -> None:
    policy = RetryPolicy(max_attempts=10, initial_delay_s=1, non_retryable=(listed,))
    assert policy.decide(FailureInfo(error_type, "no"), 1, 0, NOW).retry_at == after(1)


def test_non_retryable_wins_over_retry_later() -> None:
    failure = FailureInfo("x.Fatal", "no", retryable=False, retry_after_s=5)
    assert RetryPolicy().decide(failure, 1, 0, NOW).give_up


# -- RetryLater --------------------------------------------------------------------------------


def test_retry_later_delay_wins_over_backoff() -> None:
    policy = RetryPolicy(max_attempts=5, initial_delay_s=100, jitter=1)
    failure = FailureInfo("wfray.domain.errors.RetryLater", "rate limited", retry_after_s=2.5)
    decision = policy.decide(failure, 3, 0, NOW, random.Random(1))
    assert decision == RetryDecision(after(2.5), "step asked to retry later")


def test_retry_later_of_zero_retries_now() -> None:
    failure = FailureInfo("wfray.domain.errors.RetryLater", "now", retry_after_s=0)
    assert RetryPolicy(initial_delay_s=60).decide(failure, 1, 0, NOW).retry_at == NOW


def test_retry_later_still_counts_against_max_attempts() -> None:
    failure = FailureInfo("wfray.domain.errors.RetryLater", "later", retry_after_s=1)
    decision = RetryPolicy(max_attempts=2).decide(failure, 2, 0, NOW)
    assert decision == RetryDecision(None, "gave up after 2 attempts")


# -- lost attempts -----------------------------------------------------------------------------


def lost() -> FailureInfo:
    return FailureInfo("wfray.AttemptLost", "executor died", lost=True)


def test_lost_attempts_retry_at_once_within_their_own_cap() -> None:
    # application failures are exhausted, yet a loss (not the step's fault) is retried
    policy = RetryPolicy(max_attempts=2, initial_delay_s=30, max_lost_attempts=3)
    for n in range(1, 4):
        assert policy.decide(lost(), 2, n, NOW) == RetryDecision(NOW, "attempt lost: retry at once")


def test_lost_attempts_past_their_cap_give_up_naming_it() -> None:
    policy = RetryPolicy(max_lost_attempts=3)
    decision = policy.decide(lost(), 0, 4, NOW)
    assert decision == RetryDecision(None, "lost 4 times (cap 3)")


def test_zero_lost_attempts_allowed_gives_up_on_the_first_loss() -> None:
    assert RetryPolicy(max_lost_attempts=0).decide(lost(), 0, 1, NOW).give_up


def test_a_lost_attempt_is_retried_even_if_its_type_is_listed_non_retryable() -> None:
    # losing the worker says nothing about the step: its own cap decides
    policy = RetryPolicy(non_retryable=("AttemptLost",))
    assert policy.decide(lost(), 0, 1, NOW).retry_at == NOW


# -- values ------------------------------------------------------------------------------------


def test_policy_and_failure_are_frozen_values() -> None:
    policy = RetryPolicy()
    with pytest.raises(ValueError, match="frozen"):
        policy.max_attempts = 9  # type: ignore[misc]
    assert RetryPolicy(max_attempts=4) == RetryPolicy(max_attempts=4)
    assert hash(FailureInfo("a", "b")) == hash(FailureInfo("a", "b"))


def test_an_allowlist_of_retryable_types_gives_up_on_anything_else() -> None:
    from datetime import UTC, datetime

    from wfray.domain.policy import FailureInfo, RetryPolicy

    policy = RetryPolicy(max_attempts=5, retryable=("ConnectionError", "httpx.ReadTimeout"))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert not policy.decide(FailureInfo("builtins.ConnectionError", "x"), 1, 0, now).give_up
    assert not policy.decide(FailureInfo("httpx.ReadTimeout", "x"), 1, 0, now).give_up
    refused = policy.decide(FailureInfo("builtins.ValueError", "x"), 1, 0, now)
    assert refused.give_up
    assert "not among the retryable types" in refused.reason
