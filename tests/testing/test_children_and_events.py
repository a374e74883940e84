"""A parent waiting for its child runs does not keep the engine busy: the children's retries
still wait for the clock, and the parent goes on when they finish. Events start their
subscribers."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

import wfray
from tests.testing import flows
from wfray.testing import LocalWfray


def test_a_parent_waits_for_children_whose_retries_need_the_clock(wf: LocalWfray) -> None:
    began = time.perf_counter()
    run = wf.submit(flows.invoice_all, flows.Customers(names=["c1", "c2"]))
    wf.settle()  # both children failed their first charge; the parent's step waits
    assert run.status() is wfray.RunStatus.RUNNING
    children = wf.detail(run.run_id).children
    assert len(children) == 2
    assert {c.status for c in children} == {wfray.RunStatus.RUNNING}
    with pytest.raises(wfray.WaitTimeoutError, match="until the fake clock moves"):
        run.result(timeout=30)

    wf.clock.advance(timedelta(hours=1))
    assert run.result(timeout=5) == ["charged c1", "charged c2"]
    assert time.perf_counter() - began < 2.0
    for child in wf.detail(run.run_id).children:
        wf.assert_attempts(child.run_id, "charge", ["failed", "succeeded"])


def test_an_event_starts_its_subscriber_once_per_id(wf: LocalWfray) -> None:
    (run_id,) = wf.publish("testing.paid", {"id": "e1"}, id="evt-1")
    assert wf.publish("testing.paid", {"id": "e1"}, id="evt-1") == [run_id]
    assert wf.run(run_id).result(timeout=5) == "thanks for e1"
    assert flows.EFFECTS["e1"] == ["thanked"]
    with pytest.raises(wfray.InputValidationError, match="testing_on_paid"):
        wf.publish("testing.paid", {"id": ["not", "a", "string"]}, id="evt-2")


def test_an_events_runs_record_the_env_its_subscription_was_registered_with(
    wf: LocalWfray,
) -> None:
    from wfray.application.client_commands import Register

    deploy = {"working_dir": "gcs://_ray_pkg_0123456789abcdef.zip"}
    wf.register(flows.on_paid, runtime_env=deploy)
    wf.register(flows.on_paid)  # a client without an env (a publisher) changes nothing
    (run_id,) = wf.publish("testing.paid", {"id": "e9"}, id="evt-env")
    assert wf.run(run_id).result(timeout=5) == "thanks for e9"
    assert wf.detail(run_id).run.env_hash == wf.env_hash(deploy)
    with pytest.raises(wfray.InputValidationError, match="unknown runtime env 000000000000"):
        wf.call(Register([flows.on_paid.schema], "0" * 64))
    with pytest.raises(wfray.InputValidationError, match="env_hash"):
        wf.call(Register([flows.on_paid.schema], "not a hash"))
