"""POST /v1/runs honours uniqueness keys: the holder's run, 409, a new run, a 400 bad key."""

from __future__ import annotations

import uuid
from typing import Any

from tests.api.conftest import Api, wait_finished


def submit(api: Api, workflow: str, payload: dict[str, Any]) -> Any:
    return api.http.post("/v1/runs", json={"workflow": workflow, "input": payload})


def test_a_key_held_by_an_active_or_finished_run_is_answered_by_its_policy(api: Api) -> None:
    week = f"W-{uuid.uuid4().hex[:8]}"

    first = submit(api, "unit_unique_once", {"week": week})
    again = submit(api, "unit_unique_once", {"week": week, "note": "other input, same key"})
    assert first.status_code == again.status_code == 202
    run_id = first.json()["run_id"]
    assert again.json()["run_id"] == run_id
    detail = wait_finished(api.http, run_id)
    assert detail["run"]["unique_key"] == f"weekly:{week}"
    assert submit(api, "unit_unique_once", {"week": week}).json()["run_id"] == run_id

    held = submit(api, "unit_unique_refuse", {"week": week})
    refused = submit(api, "unit_unique_refuse", {"week": week})
    assert held.status_code == 202 and refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "unique_run_exists"
    assert f"run {held.json()['run_id']} holds uniqueness key 'weekly:{week}'" in error["message"]

    default = submit(api, "unit_unique_default", {"week": week})
    wait_finished(api.http, default.json()["run_id"])
    later = submit(api, "unit_unique_default", {"week": week})  # finished: a new run
    assert later.status_code == 202 and later.json()["run_id"] != default.json()["run_id"]


def test_a_key_function_that_fails_is_400_naming_the_workflow_and_stores_nothing(
    api: Api,
) -> None:
    answer = submit(api, "unit_unique_bad_key", {"week": "boom"})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_unique_key"
    assert "'unit_unique_bad_key'" in error["message"] and "must be a string" in error["message"]
    listed = api.http.get("/v1/runs", params={"workflow": "unit_unique_bad_key"}).json()
    assert listed["runs"] == []
