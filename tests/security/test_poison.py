"""No poison pill: a value the database cannot store fails one attempt, never the coordinator.

Each kind of unstorable value (NUL, lone surrogates, over-long text, values JSON cannot hold)
travels in a step's error, log line or result while other runs are in flight, on SQLite and
on PostgreSQL. Before the fix, PostgreSQL refused the commit, the loop died, and (under Ray)
the restarted coordinator met the same outcome again, for ever.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.security._poison_support import KINDS, alive, coordinator, plain, poison, run
from wfray.application.messages import SubmitRequest
from wfray.domain.status import AttemptStatus, RunStatus

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    from wfray.adapters.sqlalchemy.store import SqlRunStore

    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    made = SqlRunStore(url)
    yield made
    made.close()


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
            assert set(statuses.values()) == {RunStatus.COMPLETED}, statuses
            check(kind, store, bad.run_id)

    run(scenario)


def check(kind: str, store: Any, run_id: str) -> None:
    """What the poisoned run shows: a visible mark, never the raw value, never a lost line."""
    attempts = store.get_attempts(run_id)
    first = attempts[0]
    if kind.endswith("_log"):
        assert first.status is AttemptStatus.SUCCEEDED
        lines = [line.message for line in store.get_logs(run_id)]
        assert any("\ufffd" in line for line in lines), lines
        assert all("\x00" not in line for line in lines)
        return
    assert first.status is AttemptStatus.FAILED
    assert len(attempts) == 2 and attempts[1].status is AttemptStatus.SUCCEEDED
    message = first.error_message or ""
    if kind in ("nul_error", "surrogate_error"):
        assert "\ufffd" in message and "\x00" not in message, message
    elif kind == "long_error":
        assert len(message) < 100_000 and "characters cut" in message
    else:  # the result could not be stored: the attempt failed, saying so
        assert "could not be stored" in message, message
