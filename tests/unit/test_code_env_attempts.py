"""Every attempt of a run carries the run's runtime env to its executor: first attempts,
retries, compensations, and attempts made by a new coordinator after a crash (which reads
the env from the store once, not per attempt). Runs without one carry none, as before."""

from __future__ import annotations

import json

from tests.fixtures import unit_flows
from tests.unit.test_coordinator_inline import (
    attempts,
    coordinator,
    finish,
    nap_requests,
    request,
    run,
    started,
    until,
)
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.memory.store import InMemoryRunStore
from wfray.application.messages import Dispatch
from wfray.domain.code_env import CodeEnv
from wfray.domain.status import AttemptStatus, RunStatus

ENV = CodeEnv(working_dir="gcs://_ray_pkg_feedface.zip", env_var_names=("TOKEN",))
RAY_ENV = json.dumps({"working_dir": "gcs://_ray_pkg_feedface.zip"}, separators=(",", ":"))


class RecordingExecutor(InlineExecutor):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Dispatch] = []

    async def dispatch(self, dispatches: list[Dispatch], epoch: int = 0) -> None:
        self.seen.extend(dispatches)
        await super().dispatch(dispatches, epoch)


def envs_seen(executor: RecordingExecutor, run_id: str) -> set[tuple[str | None, str | None]]:
    return {(d.env_hash, d.runtime_env_json) for d in executor.seen if d.run_id == run_id}


def test_retries_and_compensations_run_in_the_runs_env() -> None:
    executor = RecordingExecutor()

    async def scenario() -> None:
        async with coordinator(executors={"cpu": executor, "io": executor}) as c:
            env_hash = await c.record_env(ENV)
            flaky = request("flaky", unit_flows.flaky)
            saga = request("saga", unit_flows.saga_flow)
            plain = request("plain", unit_flows.flaky)
            flaky.env_hash = saga.env_hash = env_hash
            await c.submit([flaky, saga, plain])
            views = await finish(c, "flaky", "saga", "plain")
            assert views["flaky"].status is RunStatus.COMPLETED
            assert views["saga"].status is RunStatus.COMPENSATED
            assert views["flaky"].version is not None and views["flaky"].version.endswith(
                "+" + env_hash[:12]
            )

    unit_flows.UNDO_BROKEN["s2"] = False
    run(scenario)
    assert envs_seen(executor, "flaky") == {(ENV.hash, RAY_ENV)}
    assert len([d for d in executor.seen if d.run_id == "flaky"]) == 3  # two retries
    kinds = {d.kind for d in executor.seen if d.run_id == "saga"}
    assert kinds == {"step", "compensation"}
    assert envs_seen(executor, "saga") == {(ENV.hash, RAY_ENV)}
    assert envs_seen(executor, "plain") == {(None, None)}


def test_a_new_coordinator_runs_lost_attempts_in_the_runs_env() -> None:
    second = RecordingExecutor()

    async def scenario() -> InMemoryRunStore:
        store = InMemoryRunStore()
        first = InlineExecutor()
        (nap,) = nap_requests(0.3)
        async with coordinator(store, {"cpu": first, "io": first}) as c:
            nap.env_hash = await c.record_env(ENV)
            await c.submit([nap])
            await until(lambda: started("nap", nap.run_id) == 1)
        first.crash()
        async with coordinator(store, {"cpu": second, "io": second}) as c:
            views = await finish(c, nap.run_id)
            assert views[nap.run_id].status is RunStatus.COMPLETED
        return store

    store = run(scenario)
    tries = attempts(store, "nap0", "nap")
    assert [a.status for a in tries] == [AttemptStatus.LOST, AttemptStatus.SUCCEEDED]
    assert envs_seen(second, "nap0") == {(ENV.hash, RAY_ENV)}
