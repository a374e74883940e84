"""Claims on a real Ray instance: racing runs, retries, takeovers, bad input, the run detail."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import claim_flows as cf
from wfray.domain.status import RunStatus


def key() -> str:
    return f"mail:{uuid.uuid4().hex[:8]}"


def wait_until(check: Any, what: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.05)


def test_two_runs_racing_for_one_key_one_gets_it_the_other_sees_the_holder(
    client: Any, tmp_path: Path
) -> None:
    k = key()
    a = client.enqueue(cf.send_once, key=k, folder=str(tmp_path))
    b = client.enqueue(cf.send_once, key=k, folder=str(tmp_path))
    # the loser answers at once; the winner holds the claim until the gate opens
    wait_until(lambda: any(r.status() is RunStatus.COMPLETED for r in (a, b)), "a loser")
    loser, winner = (a, b) if a.status() is RunStatus.COMPLETED else (b, a)
    seen = loser.result(timeout=30)
    assert seen["acquired"] is False and seen["state"] == "running"
    assert seen["holder"] == [winner.run_id, "send_once", 1]
    assert [p.name for p in tmp_path.glob("effect-*")] == [f"effect-{winner.run_id}-1"]
    detail = client.detail(winner.run_id)
    (held,) = detail.claims
    assert held.key == k and not held.done
    assert client.detail(loser.run_id).claims == []

    (tmp_path / "release").touch()
    won = winner.result(timeout=60)
    assert won["acquired"] and won["state"] == "done"
    assert won["result"] == {"sent_by": winner.run_id}
    later = client.enqueue(cf.send_once, key=k, folder=str(tmp_path)).result(timeout=60)
    assert later["acquired"] is False and later["state"] == "done"
    assert later["result"] == {"sent_by": winner.run_id}
    assert len(list(tmp_path.glob("effect-*"))) == 1  # the side effect happened once
    (done,) = client.detail(winner.run_id).claims
    assert done.done and done.result_json is not None


def test_a_retry_gets_its_own_claim_back(client: Any) -> None:
    k = key()
    run = client.enqueue(cf.flaky_claimer, key=k)
    seen = run.result(timeout=60)
    assert seen["acquired"] and seen["regained"] and seen["state"] == "done"
    assert seen["holder"] == [run.run_id, "flaky_claimer", 2]
    assert seen["taken_over_from"] is None and seen["result"] == "done by attempt 2"


def test_a_dead_holders_claim_is_taken_over_and_the_taker_is_told(client: Any) -> None:
    k = key()
    dead = client.enqueue(cf.claim_and_fail, key=k)
    assert client.wait([dead.run_id], timeout=60)[0].status is RunStatus.FAILED
    seen = client.enqueue(cf.read_claim, key=k).result(timeout=60)
    assert seen["state"] == "died" and seen["holder"][0] == dead.run_id
    taker = client.enqueue(cf.claim_and_finish, key=k, result="inv-9")
    got = taker.result(timeout=60)
    assert got["acquired"] and got["state"] == "done" and got["result"] == "inv-9"
    assert got["taken_over_from"] == [dead.run_id, 1]
    assert client.detail(dead.run_id).claims == []  # it holds it no more
    (claim,) = client.detail(taker.run_id).claims
    assert claim.taken_over_from is not None and claim.taken_over_from.run_id == dead.run_id


def test_an_async_step_claims_and_marks_done_without_blocking(client: Any) -> None:
    k = key()
    seen = client.enqueue(cf.claim_async, key=k).result(timeout=60)
    assert seen["acquired"] and seen["state"] == "done" and seen["result"] == "async-ok"


def test_a_claim_not_yet_taken_reads_as_none(client: Any) -> None:
    assert client.enqueue(cf.read_claim, key=key()).result(timeout=60) is None


@pytest.mark.parametrize(
    ("bad_key", "ttl", "words"),
    [
        (123, 60, "claim key must be a string, got int"),
        ("x" * 201, 60, "claim key is 201 characters long; at most 200"),
        ("a\x00b", 60, "NUL"),
        ("ok", 0, "claim ttl must be positive"),
        ("ok", -5, "claim ttl must be positive"),
    ],
)
def test_bad_input_fails_the_step_at_once_naming_what_was_wrong(
    client: Any, bad_key: Any, ttl: Any, words: str
) -> None:
    run = client.enqueue(cf.bad_claim, key=bad_key, ttl=ttl)
    (view,) = client.wait([run.run_id], timeout=60)
    assert view.status is RunStatus.FAILED
    attempts = client.detail(run.run_id).attempts
    assert len(attempts) == 1, "a bad claim is not retried"
    assert attempts[0].error_type.endswith("InvalidClaimError")
    assert words in attempts[0].error_message
