"""A slow-drip server cannot hold the io executor's threads for ever (issue 13, item 2): sync
io steps that set no timeout get the operator's default (WFRAY_IO_SYNC_TIMEOUT_S)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures import flows
from tests.integration.conftest import start_wfray
from tests.security._ssrf_support import read_slowly, read_slowly_within_its_own_timeout, serve
from wfray.config import load_settings
from wfray.domain.errors import DefinitionError
from wfray.domain.status import AttemptStatus, RunStatus

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def wf(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    client = start_wfray(tmp_path_factory.mktemp("wfray"), io_sync_timeout_s=1.0)
    yield client
    client.shutdown()


def test_a_sync_io_step_held_by_a_slow_drip_server_times_out_and_is_retried(wf: Any) -> None:
    stop = threading.Event()
    with serve(drip=stop) as server:
        try:
            run = wf.enqueue(read_slowly, url=f"{server.url}/drip")
            (view,) = wf.wait([run.run_id], timeout=120)
        finally:
            stop.set()  # ends the drips: the abandoned threads return
    assert view.status is RunStatus.FAILED
    attempts = run.detail().attempts
    # the retry policy applies (two attempts), each stopped by the default timeout
    assert [a.status for a in attempts] == [AttemptStatus.TIMED_OUT] * 2
    for attempt in attempts:
        assert attempt.error_type == "wfray.AttemptTimeout"
        assert "the default timeout of sync io steps" in (attempt.error_message or "")
        assert "WFRAY_IO_SYNC_TIMEOUT_S" in (attempt.error_message or "")
    assert len(server.seen) == 2


def test_async_io_steps_and_steps_with_their_own_timeout_keep_theirs(wf: Any) -> None:
    stop = threading.Event()
    with serve(drip=stop) as server:
        try:
            own = wf.enqueue(read_slowly_within_its_own_timeout, url=f"{server.url}/drip")
            # an async step can be cancelled at any await: the sync default does not apply
            awaiting = wf.enqueue(flows.async_hold, seconds=1.5)
            assert own.result(timeout=60) == 50  # the whole 5 s drip
            assert awaiting.result(timeout=60) == "held"
        finally:
            stop.set()


@pytest.mark.parametrize(
    ("raw", "expected"), [("90", 90.0), ("0.5", 0.5), ("0", None), ("none", None)]
)
def test_the_default_is_a_setting(raw: str, expected: float | None) -> None:
    assert load_settings({"WFRAY_IO_SYNC_TIMEOUT_S": raw}).io_sync_timeout_s == expected
    assert load_settings({}).io_sync_timeout_s == 3600.0


def test_a_bad_default_is_refused_naming_the_variable() -> None:
    with pytest.raises(DefinitionError, match="WFRAY_IO_SYNC_TIMEOUT_S must be a number"):
        load_settings({"WFRAY_IO_SYNC_TIMEOUT_S": "soon"})
