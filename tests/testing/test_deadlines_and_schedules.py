"""Run deadlines and cron schedules, both on the fake clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

import wfray
from tests.testing import flows
from tests.testing.conftest import START
from wfray.testing import FakeClock, LocalWfray, local_wfray


def test_a_deadline_expires_on_advance_and_what_completed_is_undone(wf: LocalWfray) -> None:
    run = wf.submit(flows.booking, flows.Order(id="b1"))
    wf.settle()
    assert run.status() is wfray.RunStatus.RUNNING  # confirm waits for its retry in an hour
    wf.clock.advance(timedelta(minutes=9, seconds=59))
    assert run.status() is wfray.RunStatus.RUNNING

    wf.clock.advance(timedelta(seconds=1))  # 600 s: the deadline, long before the retry
    with pytest.raises(wfray.RunFailedError, match="compensated"):
        run.result(timeout=5)
    assert flows.EFFECTS["b1"] == ["book", "confirm", "unbook:seat-b1"]
    detail = wf.detail(run.run_id)
    assert detail.run.finished_at == START + timedelta(minutes=10)
    wf.assert_attempts(run, "confirm", ["failed"])  # the retry never came

    wf.clock.advance(timedelta(hours=2))
    assert flows.EFFECTS["b1"] == ["book", "confirm", "unbook:seat-b1"], "nothing after it"


def test_a_deadline_given_at_submission_overrides_the_workflows(wf: LocalWfray) -> None:
    run = wf.submit(flows.booking, flows.Order(id="b2"), deadline_s=7200)
    wf.clock.advance(timedelta(hours=1))  # the first retry of confirm, still in time
    assert flows.EFFECTS["b2"] == ["book", "confirm", "confirm"]
    wf.clock.advance(timedelta(hours=1))
    assert run.status() is wfray.RunStatus.COMPENSATED


def test_an_hourly_schedule_fires_once_per_tick_as_the_clock_passes_it(wf: LocalWfray) -> None:
    wf.create_schedule(
        flows.ticker, name="hourly", cron="0 * * * *", tz="UTC", input={"label": "{tick:%H:%M}"}
    )
    (info,) = wf.list_schedules(2)
    assert info.next_fire_times == [START + timedelta(minutes=30), START + timedelta(hours=1.5)]
    wf.settle()
    assert flows.EFFECTS["ticks"] == [], "nothing fires before its time"

    wf.clock.advance(timedelta(minutes=29))
    assert flows.EFFECTS["ticks"] == []
    wf.clock.advance(timedelta(hours=2, minutes=1))  # 01:00, 02:00 and 03:00
    assert flows.EFFECTS["ticks"] == ["01:00", "02:00", "03:00"]
    runs = wf.list_runs(workflow="testing_ticker")
    assert sorted(r.created_at for r in runs) == [
        START + timedelta(minutes=30),
        START + timedelta(hours=1, minutes=30),
        START + timedelta(hours=2, minutes=30),
    ]
    assert {r.trigger for r in runs} == {"schedule"}

    wf.pause_schedule("hourly")
    wf.clock.advance(timedelta(hours=3))
    assert len(flows.EFFECTS["ticks"]) == 3, "a paused schedule does not fire"
    wf.resume_schedule("hourly")
    triggered = wf.trigger_schedule("hourly")
    assert triggered.result(timeout=5) == "06:00"  # started now, outside its cron
    wf.delete_schedule("hourly")
    assert wf.list_schedules() == []


def test_a_rate_limited_queue_starts_its_runs_as_the_clock_refills_it() -> None:
    hourly = wfray.QueueConfig(name="hourly", rate_per_s=1 / 3600, burst=1)
    with local_wfray(FakeClock(START), queues=[hourly]) as wf:
        runs = wf.submit_many(flows.ticker, [{"label": f"t{i}"} for i in range(3)], queue="hourly")
        wf.settle()
        assert flows.EFFECTS["ticks"] == ["t0"], "one start per hour"
        wf.clock.advance(timedelta(minutes=59))
        assert flows.EFFECTS["ticks"] == ["t0"]
        wf.clock.advance(timedelta(hours=1, minutes=1))
        assert flows.EFFECTS["ticks"] == ["t0", "t1", "t2"]
        started = sorted(a.started_at for r in runs for a in wf.detail(r.run_id).attempts)
        # the bucket rounds a token's time up to the microsecond
        assert [round((at - START).total_seconds(), 3) for at in started] == [0, 3600, 7200]
