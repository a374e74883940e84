"""Crashes at named moments (wfray.testing.chaos), each exactly where it is armed: the run
finishes, and each side effect happened as often as the at-least-once contract says.

A worker killed after its step's side effect and before the outcome left it repeats that
effect (the step must dedupe with ctx.idempotency_key); every other moment repeats nothing:
the coordinator's crashes lose no outcome (executors keep them until acknowledged) and
start nothing twice (dispatches are fenced and reconciled).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import chaos_flows
from tests.integration.conftest import start_wfray
from wfray.domain.status import AttemptStatus, RunStatus
from wfray.testing.chaos import Chaos, Moment

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def wf(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    client = start_wfray(tmp_path_factory.mktemp("chaos-moments"))
    yield client
    client.shutdown()


@pytest.fixture
def chaos(chaos_folder: Path) -> Chaos:
    return Chaos(chaos_folder)


def order_id(request: pytest.FixtureRequest) -> str:
    return request.node.name.replace("[", "-").rstrip("]")


def attempts_of(wf: Any, run_id: str, step: str) -> list[Any]:
    return [a for a in wf.detail(run_id).attempts if a.step == step]


def history(wf: Any, run_id: str) -> list[str]:
    return [
        f"{a.step}#{a.attempt} {a.kind} {a.status.value} on {a.executor} pid {a.pid}: "
        f"{a.error_message}"
        for a in wf.detail(run_id).attempts
    ]


def test_a_worker_killed_after_its_side_effect_repeats_only_that_step(
    wf: Any, chaos: Chaos, request: pytest.FixtureRequest
) -> None:
    order = order_id(request)
    armed = chaos.arm(Moment.STEP_RETURNED, workflow="chaos_billing", step="charge")
    run = wf.submit(chaos_flows.billing, {"order": order})
    chaos.wait_fired(armed)

    assert run.result(timeout=120) == f"sent payment-{order}"
    assert chaos.count(f"charge:{order}") == 2  # at least once, as documented
    assert chaos.count(f"notify:{order}") == 1
    first, second = attempts_of(wf, run.run_id, "charge")
    assert first.status is AttemptStatus.LOST and second.status is AttemptStatus.SUCCEEDED


def test_an_io_executor_killed_as_a_step_starts_runs_it_once(
    wf: Any, chaos: Chaos, request: pytest.FixtureRequest
) -> None:
    order = order_id(request)
    armed = chaos.arm(Moment.STEP_STARTED, workflow="chaos_billing", step="notify")
    run = wf.submit(chaos_flows.billing, {"order": order})
    chaos.wait_fired(armed)

    assert run.result(timeout=120) == f"sent payment-{order}"
    assert chaos.count(f"notify:{order}") == 1, history(wf, run.run_id)  # died before it
    statuses = [a.status for a in attempts_of(wf, run.run_id, "notify")]
    assert statuses == [AttemptStatus.LOST, AttemptStatus.SUCCEEDED]


@pytest.mark.parametrize(
    "moment",
    [
        Moment.COORDINATOR_BEFORE_COMMIT,
        Moment.COORDINATOR_AFTER_COMMIT,
        Moment.COORDINATOR_AFTER_DISPATCH,
    ],
)
def test_a_coordinator_killed_at_a_moment_repeats_no_effect(
    wf: Any, chaos: Chaos, moment: Moment, request: pytest.FixtureRequest
) -> None:
    order = order_id(request)
    # `charge` is in the turn that commits its outcome (before/after commit) and in the
    # turn that dispatches it (after dispatch)
    armed = chaos.arm(moment, workflow="chaos_billing", step="charge")
    run = wf.submit(chaos_flows.billing, {"order": order})
    chaos.wait_fired(armed)

    assert run.result(timeout=120) == f"sent payment-{order}"
    assert chaos.count(f"charge:{order}") == 1
    assert chaos.count(f"notify:{order}") == 1
    charged = attempts_of(wf, run.run_id, "charge")
    assert [a.status for a in charged][-1] is AttemptStatus.SUCCEEDED
    assert sum(a.status is AttemptStatus.SUCCEEDED for a in charged) == 1


def test_a_worker_killed_during_a_compensation_undoes_once_and_compensates(
    wf: Any, chaos: Chaos, request: pytest.FixtureRequest
) -> None:
    order = order_id(request)
    armed = chaos.arm(Moment.STEP_STARTED, step="pay", kind="compensation")
    run = wf.submit(chaos_flows.shipping, {"order": order, "fail_shipping": True})
    chaos.wait_fired(armed)

    (view,) = wf.wait([run.run_id], timeout=120)
    assert view.status is RunStatus.COMPENSATED
    assert chaos.count(f"pay:{order}") == 1
    assert chaos.count(f"refund:{order}") == 1  # the killed one died before its effect
    undo = [a for a in attempts_of(wf, run.run_id, "pay") if a.kind == "compensation"]
    assert [a.status for a in undo] == [AttemptStatus.LOST, AttemptStatus.SUCCEEDED]


def test_an_arming_fires_once_and_a_disarmed_one_never(
    wf: Any, chaos: Chaos, request: pytest.FixtureRequest
) -> None:
    order = order_id(request)
    kept = chaos.arm(Moment.STEP_STARTED, workflow="chaos_billing", step="no-such-step")
    assert chaos.disarm(kept) and not chaos.disarm(kept)
    armed = chaos.arm(Moment.STEP_RETURNED, workflow="chaos_billing", step="charge")
    first = wf.submit(chaos_flows.billing, {"order": f"{order}-1"})
    chaos.wait_fired(armed)
    second = wf.submit(chaos_flows.billing, {"order": f"{order}-2"})
    assert second.result(timeout=120) == f"sent payment-{order}-2"
    assert first.result(timeout=120) == f"sent payment-{order}-1"
    assert chaos.count(f"charge:{order}-1") == 2 and chaos.count(f"charge:{order}-2") == 1
    assert chaos.fired(kept) is None
