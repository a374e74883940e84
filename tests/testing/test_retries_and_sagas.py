"""Retries an hour apart and a saga with a compensation retry, in milliseconds of real time."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

import wfray
from tests.testing import flows
from tests.testing.conftest import START
from wfray.testing import LocalWfray, assert_attempts


def test_a_retry_an_hour_later_happens_on_advance_and_not_before(wf: LocalWfray) -> None:
    began = time.perf_counter()
    run = wf.submit(flows.orders, flows.Order(id="o1"))
    (view,) = wf.wait([run.run_id], timeout=5)
    assert view.status is wfray.RunStatus.RUNNING
    assert flows.EFFECTS["o1"] == ["reserve", "charge:attempt 1"]
    wf.assert_attempts(run, "charge", ["failed"])

    wf.clock.advance(timedelta(minutes=59))
    assert flows.EFFECTS["o1"] == ["reserve", "charge:attempt 1"], "the retry came early"

    wf.clock.advance(timedelta(minutes=1))
    assert run.result(timeout=5) == "charged o1"
    assert time.perf_counter() - began < 2.0
    first, second = wf.assert_attempts(run, "charge", ["failed", "succeeded"])
    assert first.finished_at == START
    assert second.started_at == START + timedelta(hours=1), "stamped on the fake clock"
    assert wf.step_logs(run, "charge") == [
        "charging order o1 for stock-o1 (attempt 1)",
        "charging order o1 for stock-o1 (attempt 2)",
    ]
    wf.assert_logged(run, "charge", "attempt 2", attempt=2)


def test_a_declined_card_is_retried_then_compensated_with_a_retried_release(
    wf: LocalWfray,
) -> None:
    began = time.perf_counter()
    run = wf.submit(flows.orders, flows.Order(id="o2", card="declined"))
    wf.settle()  # what can happen without the clock moving: the first charge fails
    assert flows.EFFECTS["o2"] == ["reserve", "charge:attempt 1"]

    wf.clock.advance(timedelta(hours=1))  # the second charge, two hours before the third
    assert flows.EFFECTS["o2"][-1] == "charge:attempt 2"
    assert run.status() is wfray.RunStatus.RUNNING

    wf.clock.advance(timedelta(hours=2))  # the third charge fails: the release fails once
    assert run.status() is wfray.RunStatus.COMPENSATING
    assert flows.EFFECTS["o2"][-1] == "release:stock-o2"

    wf.clock.advance(timedelta(minutes=10))  # the release's own retry
    with pytest.raises(wfray.RunFailedError, match="compensated"):
        run.result(timeout=5)
    assert time.perf_counter() - began < 2.0
    assert flows.EFFECTS["o2"] == [
        "reserve",
        "charge:attempt 1",
        "charge:attempt 2",
        "charge:attempt 3",
        "release:stock-o2",
        "release:stock-o2",
    ]
    charges = assert_attempts(wf, run, "charge", ["failed", "failed", "failed"])
    assert [a.started_at for a in charges] == [
        START,
        START + timedelta(hours=1),
        START + timedelta(hours=3),
    ]
    releases = wf.assert_attempts(run, "reserve", ["failed", "succeeded"], kind="compensation")
    assert releases[1].started_at == START + timedelta(hours=3, minutes=10)
    wf.assert_status(run, "compensated")


def test_one_long_advance_passes_every_retry_at_its_own_time(wf: LocalWfray) -> None:
    run = wf.submit(flows.orders, flows.Order(id="o3", card="declined"))
    wf.clock.advance(timedelta(days=1))  # 1 h, then 2 h later, then the release 10 min later
    assert run.status() is wfray.RunStatus.COMPENSATED
    releases = wf.attempts_of(run, "reserve", kind="compensation")
    assert [a.finished_at for a in releases] == [
        START + timedelta(hours=3),
        START + timedelta(hours=3, minutes=10),
    ]


def test_cancel_compensates_what_completed(wf: LocalWfray) -> None:
    run = wf.submit(flows.orders, flows.Order(id="o4"))
    wf.settle()  # reserved; the charge waits for its retry in an hour
    answer = wf.cancel(run.run_id, "the customer changed their mind")
    assert answer.applied
    wf.clock.advance(timedelta(minutes=10))  # the release fails once, then its retry passes
    assert run.status() is wfray.RunStatus.COMPENSATED
    assert flows.EFFECTS["o4"][-2:] == ["release:stock-o4", "release:stock-o4"]
    assert "charge:attempt 2" not in flows.EFFECTS["o4"], "a cancelled run retries nothing"
    assert not wf.cancel(run.run_id).applied, "cancelling a finished run is a no-op"


def test_the_client_calls_answer_as_the_real_client_does(wf: LocalWfray) -> None:
    runs = wf.submit_many(flows.orders, [flows.Order(id="m1"), flows.Order(id="m2")])
    again = wf.submit(flows.orders, flows.Order(id="k"), idempotency_key="order-k")
    same = wf.submit(flows.orders, flows.Order(id="k"), idempotency_key="order-k")
    assert same.run_id == again.run_id
    wf.clock.advance(3600)
    views = wf.wait([r.run_id for r in [*runs, again]], timeout=5)
    assert [v.status for v in views] == [wfray.RunStatus.COMPLETED] * 3
    with pytest.raises(wfray.RunFailedError, match="order x is refused") as failed:
        wf.execute(flows.final, flows.Order(id="x"), timeout=5)
    assert failed.value.status == "failed"
    (resumed,) = wf.resume_failed(workflow="testing_final")
    assert resumed.applied and resumed.run_id == failed.value.run_id
    with pytest.raises(wfray.RunFailedError, match="order x is refused"):
        wf.run(resumed.run_id).result(timeout=5)
    wf.assert_attempts(resumed.run_id, "refuse", ["failed", "failed"])
    assert wf.stats()["runs_in_memory"] == 0, "finished runs leave the coordinator's memory"
    assert {r.run_id for r in wf.list_runs(workflow="testing_orders")} == {
        runs[0].run_id,
        runs[1].run_id,
        again.run_id,
    }
    assert wf.run(again.run_id).result(timeout=5) == "charged k"
    assert wf.next_value("invoice") + 1 == wf.next_value("invoice")
