"""No poison pill: a value the database cannot store fails one attempt, never the coordinator.

Each kind of unstorable value (NUL, lone surrogates, over-long text, values JSON cannot hold)
travels in a step's error, log line or result while other runs are in flight, on SQLite and
on PostgreSQL. Before the fix, PostgreSQL refused the commit, the loop died, and (under Ray)
the restarted coordinator met the same outcome again, for ever.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.security._poison_support import (
    KINDS,
    alive,
    coordinator,
    plain,
    poison,
    rogue_executor,
    run,
)
from wfray.application.messages import SubmitRequest
from wfray.domain.reads import LogQuery
from wfray.domain.status import AttemptStatus, RunStatus

pytestmark = pytest.mark.timeout(120)


def request(flow: Any, payload: dict[str, Any]) -> SubmitRequest:
    return SubmitRequest(
        run_id=f"{flow.name}-{uuid.uuid4().hex[:12]}",
        workflow=flow.name,
        version=flow.schema.version,
        input_json=json.dumps(payload),
    )


@pytest.mark.parametrize("kind", KINDS)
def test_an_unstorable_value_fails_one_attempt_and_every_run_finishes(
    store: Any, kind: str
) -> None:
    async def scenario() -> None:
        async with coordinator(store) as c:
            others = [request(plain, {"n": i}) for i in range(30)]
            bad = request(poison, {"kind": kind})
            more = [request(plain, {"n": i}) for i in range(30, 60)]
            everything = [*others, bad, *more]
            results = await c.submit(everything)
            assert all(r.error is None for r in results), results
            views = await c.wait([r.run_id for r in everything], 30)
            assert alive(c), "the coordinator loop died"
            statuses = {v.run_id: v.status for v in views}
            assert len(statuses) == len(everything)
            expected = {v.run_id: RunStatus.COMPLETED for v in views}
            if kind == "object_result":  # no JSON at all: not retryable, as before
                expected[bad.run_id] = RunStatus.FAILED
            assert statuses == expected
            check(kind, store, bad.run_id)

    run(scenario)


def check(kind: str, store: Any, run_id: str) -> None:
    """What the poisoned run shows: a visible mark, never the raw value, never a lost line."""
    attempts = store.get_attempts(run_id)
    first = attempts[0]
    if kind.endswith("_log"):
        assert first.status is AttemptStatus.SUCCEEDED
        lines = [line.message for line in store.get_logs(LogQuery(run_id))]
        assert any("\ufffd" in line for line in lines), lines
        assert all("\x00" not in line for line in lines)
        return
    assert first.status is AttemptStatus.FAILED
    if kind != "object_result":
        assert len(attempts) == 2 and attempts[1].status is AttemptStatus.SUCCEEDED
    message = first.error_message or ""
    if kind in ("nul_error", "surrogate_error"):
        assert "\ufffd" in message and "\x00" not in message, message
    elif kind == "long_error":
        assert len(message) < 100_000 and "characters cut" in message
    elif kind == "object_result":
        assert "cannot be serialised to JSON" in message, message
    else:  # the result could not be stored: the attempt failed, saying so
        assert "could not be stored" in message, message


def test_a_refused_row_fails_its_attempt_and_the_rest_of_the_batch_commits(store: Any) -> None:
    """One outcome among 200 that the database refuses (a value the gate does not screen):
    the rows are bisected, that attempt fails saying why, the 199 others commit, nothing is
    lost and the coordinator never stops."""
    requests = [request(plain, {"n": i}) for i in range(200)]
    target = requests[137].run_id

    async def scenario() -> None:
        async with coordinator(store, rogue_executor(target)) as c:
            results = await c.submit(requests)
            assert all(r.error is None for r in results), results[:3]
            views = await c.wait([r.run_id for r in requests], 60)
            assert alive(c), "the coordinator loop died"
            assert c.guard.isolations >= 1
            counted = c.metrics.snapshot()["outcomes_quarantined_total"]
            assert counted == [({"reason": "refused"}, 1.0)]
            statuses = {v.run_id: v.status for v in views}
            assert statuses == {r.run_id: RunStatus.COMPLETED for r in requests}

    run(scenario)
    attempts = store.get_attempts(target)
    assert [a.status for a in attempts] == [AttemptStatus.FAILED, AttemptStatus.SUCCEEDED]
    assert "could not be stored" in (attempts[0].error_message or "")
    assert attempts[0].error_type == "wfray.OutcomeNotStored"
    (aside,) = store.quarantined_outcomes()
    assert aside.key == (target, "echo", -1, 1) and aside.status == "refused"
    for other in requests[:5]:  # the others ran once, none judged lost by the rebuild
        assert [a.status for a in store.get_attempts(other.run_id)] == [AttemptStatus.SUCCEEDED]
