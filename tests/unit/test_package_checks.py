"""The cpu executor checks an env's packages before it launches the env's attempts
(adapters/ray/packages.py): what happens to attempts while that check is under way."""

from __future__ import annotations

import asyncio
from typing import Any

from wfray.adapters.ray.envelopes import Envelope
from wfray.adapters.ray.executor import CpuExecutor, ExecutorConfig
from wfray.application.messages import Dispatch
from wfray.domain.status import AttemptStatus

ENV_JSON = '{"working_dir":"gcs://_ray_pkg_0123456789abcdef.zip"}'


class HeldCheck:
    """A package check that ends when the test says so, with the answer it gives."""

    def __init__(self, problem: str | None) -> None:
        self.problem = problem
        self.release = asyncio.Event()
        self.forgotten: list[str] = []

    async def ensure(self, env_json: str) -> str | None:
        await self.release.wait()
        return self.problem

    def forget(self, env_json: str) -> None:
        self.forgotten.append(env_json)


def dispatch(step: str) -> Dispatch:
    return Dispatch(
        run_id="run-1",
        workflow="flow",
        step=step,
        map_index=-1,
        attempt=1,
        fn="tests.fixtures.unit_flows:only",
        args={},
        pool="cpu",
        env_hash="a" * 64,
        runtime_env_json=ENV_JSON,
    )


async def checked(problem: str | None, cancel: list[str]) -> tuple[list[Any], Any, Any]:
    launched: list[Any] = []
    executor = CpuExecutor(ExecutorConfig(), lambda *shape: launched.append(shape))
    check = HeldCheck(problem)
    executor.packages = check  # type: ignore[assignment]
    sent = [dispatch("first"), dispatch("second")]
    going = asyncio.create_task(executor.dispatch([Envelope.of(d) for d in sent], 1))
    while len(executor.checking) < len(sent):
        await asyncio.sleep(0)
    during = await executor.snapshot(0, 1)
    await executor.cancel([d.attempt_key for d in sent if d.step in cancel])
    check.release.set()
    await going
    drained = (await executor.drain(0, 0.0, 1)).opened()
    return launched, during, drained


def test_an_attempt_cancelled_while_its_packages_are_checked_is_never_launched() -> None:
    launched, during, drained = asyncio.run(checked("lost for good", ["first", "second"]))
    assert launched == []
    # meanwhile they count as running: a coordinator that reconciles does not lose them
    assert sorted(during.in_flight) == [("run-1", "first", -1, 1), ("run-1", "second", -1, 1)]
    assert sorted(o.attempt_key for o in drained.outcomes) == sorted(during.in_flight)
    assert {o.status for o in drained.outcomes} == {AttemptStatus.CANCELLED}


def test_a_package_that_cannot_be_put_back_fails_the_attempts_of_its_env() -> None:
    launched, _, drained = asyncio.run(checked("Ray no longer has package x", []))
    assert launched == []
    assert [(o.status, o.error_type) for o in drained.outcomes] == [
        (AttemptStatus.FAILED, "wfray.PackageUnavailable")
    ] * 2
    assert all(o.error_message == "Ray no longer has package x" for o in drained.outcomes)
    assert not any(o.retryable for o in drained.outcomes)
