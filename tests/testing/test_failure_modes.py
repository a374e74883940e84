"""What a test sees when things go wrong: clear errors, and hostile input handled as the real
engine handles it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import wfray
from tests.testing import flows
from tests.testing.conftest import START
from wfray.testing import FakeClock, LocalWfray, local_wfray
from wfray.testing.loop import THREAD_NAME

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_waiting_on_a_run_that_needs_the_clock_fails_at_once_saying_so(wf: LocalWfray) -> None:
    run = wf.submit(flows.orders, flows.Order(id="w1"))
    began = time.perf_counter()
    with pytest.raises(wfray.WaitTimeoutError) as waited:
        run.result(timeout=30)
    assert time.perf_counter() - began < 2.0, "no use waiting 30 s for a frozen clock"
    message = str(waited.value)
    assert f"run {run.run_id} is still running" in message
    assert "nothing happens until the fake clock moves" in message
    assert (START + timedelta(hours=1)).isoformat() in message
    assert "clock.advance" in message
    (view,) = wf.wait([run.run_id], timeout=30)  # wait returns it unfinished, at once too
    assert view.status is wfray.RunStatus.RUNNING


def test_a_step_that_blocks_makes_advance_fail_naming_it() -> None:
    with local_wfray(FakeClock(START), settle_timeout_s=0.3) as wf:
        run = wf.submit(flows.blocking, flows.Order(id="gate1"))
        with pytest.raises(wfray.WaitTimeoutError) as stuck:
            wf.clock.advance(60)
        message = str(stuck.value)
        assert "still busy after 0.3s of real time" in message
        assert f"{run.run_id} wait_for_gate[-1] attempt 1" in message
        with pytest.raises(wfray.WaitTimeoutError, match=r"still running after 0\.2s"):
            run.result(timeout=0.2)
        flows.GATES["gate1"].set()
        assert run.result(timeout=5) == "opened"


def test_a_finished_run_without_anything_due_says_nothing_will_move_it(wf: LocalWfray) -> None:
    run = wf.submit(flows.orders, flows.Order(id="w2"))
    wf.cancel(run.run_id, compensate=False)
    assert run.status() is wfray.RunStatus.CANCELLED
    with pytest.raises(wfray.WfrayError, match="no run with id 'nope'"):
        wf.run("nope").result(timeout=1)


def test_hostile_text_is_made_storable_as_by_the_real_engine(wf: LocalWfray) -> None:
    huge = "y" * 2_000_000
    run = wf.submit(flows.hostile, flows.Order(id="h1", note=huge + "\x00"))
    assert run.result(timeout=10) == "y" * 10
    first, _ = wf.assert_attempts(run, "spoil", ["failed", "succeeded"])
    assert first.error_message is not None
    assert "\x00" not in first.error_message and "\ufffd" in first.error_message
    assert len(first.error_message) < 100_000, "a 5 MB message is cut when stored"
    assert wf.step_logs(run, "spoil", attempt=1) == ["a line with a \ufffd NUL"]
    assert wf.detail(run.run_id).run.input_json.endswith('\\u0000"}'), "the input is kept"


def test_bad_ids_and_keys_are_refused_at_submission(wf: LocalWfray) -> None:
    with pytest.raises(wfray.WfrayError, match="run id"):
        wf.submit(flows.orders, flows.Order(id="r"), run_id="bad\x00id")
    with pytest.raises(wfray.InputValidationError, match="idempotency_key"):
        wf.submit(flows.orders, flows.Order(id="r"), idempotency_key="k\x00")
    with pytest.raises(wfray.InputValidationError, match="idempotency_key"):
        wf.submit(flows.orders, flows.Order(id="r"), idempotency_key="k" * 201)
    with pytest.raises(wfray.InputValidationError):
        wf.submit(flows.orders, {"id": 7, "card": ["not", "a", "string"]})
    assert wf.list_runs() == [], "nothing half-created"


def test_the_clock_moves_only_forward_and_only_by_time() -> None:
    clock = FakeClock(START)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance_to(START - timedelta(seconds=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.advance_to(datetime(2031, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2031, 1, 1))
    with pytest.raises(TypeError, match="seconds"):
        clock.advance("1h")  # type: ignore[arg-type]
    assert clock.advance(90) == START + timedelta(seconds=90), "detached, it only moves"


def test_one_clock_drives_one_local_wfray_and_a_closed_one_refuses_calls() -> None:
    clock = FakeClock(START)
    with (
        local_wfray(clock) as wf,
        pytest.raises(RuntimeError, match="already drives"),
        local_wfray(clock),
    ):
        pass
    with pytest.raises(RuntimeError, match="not started"):
        wf.submit(flows.orders, flows.Order(id="late"))
    with pytest.raises(RuntimeError, match="starts once"):
        wf.start()
    assert clock.advance(1) == START + timedelta(seconds=1), "detached on close"
    engines = [t for t in threading.enumerate() if t.name == THREAD_NAME]
    assert engines == [], "no engine thread outlives its local wfray"


def test_assertions_fail_with_what_happened(wf: LocalWfray) -> None:
    run = wf.submit(flows.orders, flows.Order(id="a1"))
    wf.settle()
    with pytest.raises(AssertionError) as failed:
        wf.assert_attempts(run, "charge", ["succeeded"])
    message = str(failed.value)
    assert "expected attempts ['succeeded'], got ['failed']" in message
    assert "#1 failed at 2030-01-07T00:30:00+00:00: builtins.ConnectionError: the card" in message
    with pytest.raises(AssertionError) as failed:
        wf.assert_status(run, "completed")
    message = str(failed.value)
    assert "expected completed, got running" in message
    assert "charge: retrying, next attempt at 2030-01-07T01:30:00+00:00" in message
    with pytest.raises(AssertionError, match="no log line contains 'refund'"):
        wf.assert_logged(run, "charge", "refund")


def test_importing_the_kit_imports_no_ray() -> None:
    code = (
        "import sys\n"
        "from tests.testing import flows\n"
        "from wfray.testing import local_wfray\n"
        "with local_wfray() as wf:\n"
        "    run = wf.submit(flows.orders, flows.Order(id='i'))\n"
        "    wf.clock.advance(3600)\n"
        "    assert run.result(timeout=5) == 'charged i'\n"
        "print(' '.join(m for m in ('ray', 'sqlalchemy', 'fastapi') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == []
