"""The poison pill on a real Ray coordinator with PostgreSQL: it never restarts.

Before the fix, a step whose error held a NUL byte made PostgreSQL refuse the commit; the
coordinator actor died, Ray restarted it, the executor handed it the same outcome, and it
died again, for ever. Here poisoned steps of every kind run among plain runs; every run
completes and Ray restarted the coordinator zero times.
"""

from __future__ import annotations

from typing import Any

import pytest
from ray._private.state import state as ray_state

from tests.integration.conftest import start_wfray
from tests.security._poison_support import plain, poison
from wfray.domain.status import RunStatus

pytestmark = pytest.mark.timeout(300)

KINDS = ("nul_error", "surrogate_error", "long_error", "nul_log", "nan_result", "inf_result")


def restarts(client: Any) -> int:
    count: int = ray_state.actor_table(client.handle._actor_id.hex())["NumRestarts"]
    return count


def test_poisoned_steps_on_ray_and_postgres_never_restart_the_coordinator(
    ray_session: None, postgres_url: str, tmp_path: Any
) -> None:
    wf = start_wfray(tmp_path, database_url=postgres_url)
    try:
        before = restarts(wf)
        ids = [r.run_id for r in wf.submit_many(plain, [{"n": i} for i in range(40)])]
        ids += [r.run_id for r in wf.submit_many(poison, [{"kind": k} for k in KINDS])]
        ids += [r.run_id for r in wf.submit_many(plain, [{"n": i} for i in range(40, 80)])]
        views = wf.wait(ids, timeout=120)
        statuses = {v.run_id: v.status for v in views}
        assert statuses == {run_id: RunStatus.COMPLETED for run_id in ids}
        assert restarts(wf) == before == 0
    finally:
        wf.shutdown()
