"""Claim rules (domain/claims.py): who gets a key, takeover, expiry, bad input; a fake clock."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from wfray.domain.claims import (
    MAX_RESULT_CHARS,
    ClaimRecord,
    ClaimState,
    Holder,
    StepLiveness,
    check_key,
    check_result,
    check_ttl,
    decide,
    finish,
    state_of,
)
from wfray.domain.errors import ClaimNotHeldError, InvalidClaimError, WfrayError
from wfray.domain.limits import MAX_KEY_CHARS

TTL = timedelta(minutes=10)
A1 = Holder("run-a", "invoice", 3, 1)
A2 = Holder("run-a", "invoice", 3, 2)
B1 = Holder("run-b", "invoice", 3, 1)
C1 = Holder("run-c", "mail", -1, 1)
RUNNING, WAITING, ENDED = StepLiveness.RUNNING, StepLiveness.WAITING, StepLiveness.ENDED


@dataclass
class FakeClock:
    t: datetime = field(default_factory=lambda: datetime(2025, 3, 1, 12, tzinfo=UTC))

    def now(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def first(clock: FakeClock, holder: Holder = A1) -> ClaimRecord:
    return decide(None, holder, "k", TTL, RUNNING, clock.now()).record


def test_the_first_claimant_gets_the_key_until_its_ttl(clock: FakeClock) -> None:
    d = decide(None, A1, "k", TTL, RUNNING, clock.now())
    assert d.acquired and d.write and not d.regained and d.taken_over is None
    assert d.state is ClaimState.RUNNING
    assert d.record == ClaimRecord("k", A1, clock.now(), clock.now() + TTL, version=1)


def test_another_step_learns_who_holds_a_running_claim(clock: FakeClock) -> None:
    held = first(clock)
    clock.advance(minutes=5)
    d = decide(held, B1, "k", TTL, RUNNING, clock.now())
    assert not d.acquired and not d.write
    assert d.record.holder == A1 and d.state is ClaimState.RUNNING


def test_a_retry_of_the_same_step_gets_it_back_with_a_fresh_ttl(clock: FakeClock) -> None:
    held = first(clock)
    clock.advance(minutes=9)
    d = decide(held, A2, "k", TTL, WAITING, clock.now())
    assert d.acquired and d.regained and d.write and d.taken_over is None
    assert d.record.holder == A2 and d.record.version == 2
    assert d.record.claimed_at == held.claimed_at
    assert d.record.expires_at == clock.now() + TTL


def test_the_same_step_gets_it_back_even_after_its_ttl_or_death(clock: FakeClock) -> None:
    # a rerun of a failed run: nobody took the claim over meanwhile, so it is still its own
    held = first(clock)
    clock.advance(hours=5)
    d = decide(held, A2, "k", TTL, ENDED, clock.now())
    assert d.acquired and d.regained and d.taken_over is None


def test_a_step_whose_attempt_ended_but_retries_keeps_it(clock: FakeClock) -> None:
    held = first(clock)
    d = decide(held, B1, "k", TTL, WAITING, clock.now())
    assert not d.acquired and d.state is ClaimState.RETRYING


def test_a_dead_holder_is_taken_over_and_the_taker_is_told(clock: FakeClock) -> None:
    held = first(clock)
    clock.advance(seconds=30)
    d = decide(held, B1, "k", TTL, ENDED, clock.now())
    assert d.acquired and d.write and d.taken_over == A1 and not d.regained
    assert d.record.holder == B1 and d.record.taken_over_from == A1
    assert d.record.claimed_at == clock.now() and d.record.version == 2


def test_an_expired_ttl_counts_as_died_even_if_the_step_still_runs(clock: FakeClock) -> None:
    held = first(clock)
    clock.advance(seconds=599)
    assert decide(held, B1, "k", TTL, RUNNING, clock.now()).acquired is False
    clock.advance(seconds=1)
    assert state_of(held, RUNNING, clock.now()) is ClaimState.DIED
    d = decide(held, B1, "k", TTL, RUNNING, clock.now())
    assert d.acquired and d.taken_over == A1


def test_the_old_holder_cannot_mark_a_claim_taken_over_done(clock: FakeClock) -> None:
    held = first(clock)
    clock.advance(minutes=11)
    taken = decide(held, B1, "k", TTL, RUNNING, clock.now()).record
    with pytest.raises(ClaimNotHeldError, match="taken over") as info:
        finish(taken, A1, '"inv-1"', clock.now())
    assert info.value.code == "claim_not_held"


def test_done_is_kept_past_the_ttl_and_shown_to_others(clock: FakeClock) -> None:
    held = first(clock)
    clock.advance(minutes=1)
    done = finish(held, A1, '"inv-7"', clock.now())
    assert done.done and done.result_json == '"inv-7"' and done.version == 2
    clock.advance(days=30)
    assert state_of(done, ENDED, clock.now()) is ClaimState.DONE
    d = decide(done, B1, "k", TTL, ENDED, clock.now())
    assert not d.acquired and d.state is ClaimState.DONE and d.record.result_json == '"inv-7"'
    again = decide(done, A2, "k", TTL, RUNNING, clock.now())
    assert again.acquired and again.regained and not again.write
    assert again.state is ClaimState.DONE


def test_marking_done_twice_keeps_the_first_result(clock: FakeClock) -> None:
    done = finish(first(clock), A1, "1", clock.now())
    clock.advance(seconds=1)
    assert finish(done, A2, "2", clock.now()) == done


def test_a_later_attempt_of_the_holding_step_may_mark_it_done(clock: FakeClock) -> None:
    assert finish(first(clock), A2, "1", clock.now()).done


def test_marking_done_an_unclaimed_key_is_refused(clock: FakeClock) -> None:
    with pytest.raises(ClaimNotHeldError, match="nobody holds"):
        finish(None, A1, "1", clock.now())
    with pytest.raises(ClaimNotHeldError, match="run-a"):
        finish(first(clock), C1, "1", clock.now())


def test_a_takeover_of_a_takeover_names_the_last_dead_holder(clock: FakeClock) -> None:
    held = first(clock)
    taken = decide(held, B1, "k", TTL, ENDED, clock.now()).record
    again = decide(taken, C1, "k", TTL, ENDED, clock.now())
    assert again.taken_over == B1 and again.record.version == 3


@pytest.mark.parametrize(
    ("key", "words"),
    [
        (42, "must be a string, got int"),
        (None, "must be a string, got NoneType"),
        (b"k", "must be a string, got bytes"),
        ("", "must not be empty"),
        ("x" * (MAX_KEY_CHARS + 1), f"at most {MAX_KEY_CHARS}"),
        ("a\x00b", "NUL"),
        ("a\ud800b", "surrogate"),
    ],
)
def test_bad_keys_are_refused_naming_what_is_wrong(key: object, words: str) -> None:
    with pytest.raises(InvalidClaimError, match=words) as info:
        check_key(key)
    assert isinstance(info.value, WfrayError) and info.value.code == "invalid_claim"
    assert "claim key" in str(info.value)


def test_good_keys_pass() -> None:
    assert check_key("invoice:Łódź:2025-03-01") == "invoice:Łódź:2025-03-01"
    assert check_key("x" * MAX_KEY_CHARS) == "x" * MAX_KEY_CHARS


@pytest.mark.parametrize(
    ("ttl", "words"),
    [
        (0, "positive"),
        (-1.5, "positive"),
        (timedelta(0), "positive"),
        (timedelta(seconds=-3), "positive"),
        (math.inf, "finite"),
        (math.nan, "finite"),
        ("60", "got str"),
        (True, "got bool"),
        (None, "got NoneType"),
    ],
)
def test_bad_ttls_are_refused_naming_what_is_wrong(ttl: object, words: str) -> None:
    with pytest.raises(InvalidClaimError, match=words) as info:
        check_ttl(ttl)
    assert "claim ttl" in str(info.value)


def test_ttls_in_seconds_or_as_timedeltas() -> None:
    assert check_ttl(90) == timedelta(seconds=90)
    assert check_ttl(0.5) == timedelta(milliseconds=500)
    assert check_ttl(timedelta(hours=1)) == timedelta(hours=1)


def test_results_are_small_and_storable() -> None:
    assert check_result('"inv-1"') == '"inv-1"'
    with pytest.raises(InvalidClaimError, match="at most"):
        check_result('"' + "x" * MAX_RESULT_CHARS + '"')
    with pytest.raises(InvalidClaimError, match="NUL"):
        check_result('"a\\u0000b"')
