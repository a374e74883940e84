"""A run keeps the workflow version it started on across a new version and a restart.

Two DAGs share the name "versioned" (tests/fixtures/versioned_v1.py and _v2.py). A run of
v1 is mid-step when v2 is registered and the coordinator is SIGKILLed; the restarted
coordinator must finish it with v1's steps, while new submissions get v2.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any

import pytest

from tests.fixtures import versioned_v1 as v1
from tests.fixtures import versioned_v2 as v2
from tests.integration.conftest import start_wfray
from wfray.application.client_commands import Pid, Submit
from wfray.application.messages import SubmitRequest
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus


@pytest.fixture(scope="module")
def wf(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Any:
    client = start_wfray(tmp_path_factory.mktemp("versions"))
    yield client
    client.shutdown()


def steps_of(detail: Any) -> set[str]:
    return {t.step for t in detail.tasks}


def submit_by_name(client: Any, name: str) -> str:
    """Submit without a version, as a caller that only knows the name: the latest applies."""
    run_id = uuid.uuid4().hex
    request = SubmitRequest(run_id=run_id, workflow=name, version="", input_json="null")
    (result,) = client.call(Submit([request]))
    assert result.error is None, result
    return run_id


def test_a_run_in_flight_keeps_its_version_after_a_new_version_and_a_restart(wf: Any) -> None:
    old, new = v1.flow.schema, v2.flow.schema
    assert old.name == new.name == "versioned"
    assert old.version != new.version

    run = wf.submit(v1.flow)
    deadline = time.monotonic() + 30
    while run.detail().attempts_of("slow") == []:  # the slow step has been dispatched
        assert time.monotonic() < deadline, "v1's slow step never started"
        time.sleep(0.05)
    wf.register(v2.flow)
    os.kill(wf.call(Pid()), signal.SIGKILL)

    assert run.result(timeout=60) == "v1:finish"
    detail = run.detail()
    assert detail.run.version == old.version
    assert steps_of(detail) == {"slow", "finish"}
    assert {t.status for t in detail.tasks} == {TaskStatus.COMPLETED}
    # the executor kept the slow step running through the restart: one attempt each
    assert [(a.step, a.status) for a in detail.attempts] == [
        ("slow", AttemptStatus.SUCCEEDED),
        ("finish", AttemptStatus.SUCCEEDED),
    ]

    # a caller naming only the workflow gets the latest version, v2, after the restart
    latest = submit_by_name(wf, "versioned")
    (view,) = wf.wait([latest], timeout=60)
    assert view.status is RunStatus.COMPLETED, view
    detail = wf.detail(latest)
    assert detail.run.version == new.version
    assert steps_of(detail) == {"begin", "middle", "end"}
    assert view.result_json == '"v2:middle:end"'

    # and a caller holding v1's definition still gets v1
    again = wf.submit(v1.flow)
    assert again.detail().run.version == old.version
    assert again.result(timeout=60) == "v1:finish"
