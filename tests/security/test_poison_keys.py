"""Names and keys a submission brings are checked before anything is stored.

An idempotency key of 10,000 characters broke PostgreSQL's unique index (an index row is
limited to about 2,700 bytes): the commit failed, and with it every run of the turn. Keys,
queue names, run ids and trigger ids now have a length limit and may not hold NUL or lone
surrogates; a refusal names the field, and the other runs of the same call start.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.security._poison_support import alive, coordinator, plain, run
from wfray.application.messages import SubmitRequest
from wfray.domain.errors import InputValidationError
from wfray.domain.limits import MAX_KEY_CHARS
from wfray.domain.status import RunStatus

pytestmark = pytest.mark.timeout(120)


def submission(n: int, **fields: Any) -> SubmitRequest:
    values: dict[str, Any] = {
        "run_id": f"plain-{uuid.uuid4().hex[:12]}",
        "workflow": plain.name,
        "version": plain.schema.version,
        "input_json": json.dumps({"n": n}),
    }
    values.update(fields)
    return SubmitRequest(**values)


BAD = {
    "idempotency_key": {"idempotency_key": "k" * 10_000},
    "queue": {"queue": "q" * (MAX_KEY_CHARS + 1)},
    "concurrency_key": {"concurrency_key": "cust\x00omer"},
    "run_id": {"run_id": "run-\ud800"},
    "trigger_id": {"trigger_id": "t" * 5000},
    "input": {"input_json": '{"n": "\x00"}'},
}


@pytest.mark.parametrize("field", sorted(BAD))
def test_a_bad_key_is_refused_by_name_and_the_other_runs_start(store: Any, field: str) -> None:
    async def scenario() -> None:
        async with coordinator(store) as c:
            good = [submission(i) for i in range(20)]
            longest = submission(99, idempotency_key="i" * MAX_KEY_CHARS, queue="default")
            bad = submission(-1, **BAD[field])
            results = await c.submit([*good[:10], bad, longest, *good[10:]])
            refused = results[10]
            assert refused.error_code == InputValidationError.code
            assert field.split("_")[0] in (refused.error or ""), refused.error
            started = [r for i, r in enumerate(results) if i != 10]
            assert all(r.error is None and r.created for r in started), started
            views = await c.wait([r.run_id for r in started], 30)
            assert {v.status for v in views} == {RunStatus.COMPLETED}
            assert alive(c)

    run(scenario)
