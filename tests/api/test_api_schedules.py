"""Schedules over HTTP: create, list with next fire times, pause, resume, trigger, delete."""

from __future__ import annotations

import time
from datetime import datetime

from tests.api.conftest import Api, wait_finished


def schedule_runs(api: Api, name: str) -> list[dict[str, object]]:
    page = api.http.get("/v1/runs", params={"workflow": "numbers", "limit": 200}).json()
    return [r for r in page["runs"] if str(r.get("trigger_id") or "").startswith(f"{name}@")]


def test_a_schedule_is_managed_over_http(api: Api) -> None:
    name = f"every-second-{time.monotonic_ns()}"
    body = {"workflow": "numbers", "cron": "* * * * * *", "tz": "Europe/Berlin"}
    body["input"] = {"count": 2}  # type: ignore[assignment]

    created = api.http.put(f"/v1/schedules/{name}", json=body)

    assert created.status_code == 200, created.text
    info = created.json()
    assert info["workflow"] == "numbers" and info["paused"] is False
    times = [datetime.fromisoformat(t) for t in info["next_fire_times"]]
    assert len(times) == 3 and times == sorted(times)
    listed = {s["name"]: s for s in api.http.get("/v1/schedules").json()}
    assert name in listed

    deadline = time.monotonic() + 30
    while not schedule_runs(api, name) and time.monotonic() < deadline:
        time.sleep(0.2)
    fired = schedule_runs(api, name)
    assert fired, "the schedule started no run"
    assert wait_finished(api.http, str(fired[0]["run_id"]))["run"]["trigger"] == "schedule"

    paused = api.http.post(f"/v1/schedules/{name}/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert paused.json()["next_fire_times"] == []
    time.sleep(1.5)  # a tick in flight when it paused may still land
    count = len(schedule_runs(api, name))
    time.sleep(2.0)
    assert len(schedule_runs(api, name)) == count, "a paused schedule fired"

    triggered = api.http.post(f"/v1/schedules/{name}/trigger")
    assert triggered.status_code == 202, triggered.text
    run = wait_finished(api.http, triggered.json()["run_id"])
    assert run["run"]["status"] == "completed"

    resumed = api.http.post(f"/v1/schedules/{name}/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False

    assert api.http.delete(f"/v1/schedules/{name}").status_code == 204
    gone = api.http.post(f"/v1/schedules/{name}/pause")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "schedule_not_found"


def test_bad_schedules_are_refused_naming_the_field(api: Api) -> None:
    bad_cron = api.http.put(
        "/v1/schedules/broken",
        json={"workflow": "numbers", "cron": "61 * * * *", "input": {"count": 1}},
    )
    assert bad_cron.status_code in (400, 422), bad_cron.text
    assert "cron" in bad_cron.text
    bad_tz = api.http.put(
        "/v1/schedules/broken",
        json={"workflow": "numbers", "cron": "* * * * *", "tz": "Mars/Base", "input": {"count": 1}},
    )
    assert bad_tz.status_code in (400, 422) and "tz" in bad_tz.text, bad_tz.text
    unknown = api.http.put("/v1/schedules/broken", json={"workflow": "nope", "cron": "* * * * *"})
    assert unknown.status_code == 404, unknown.text
    bad_policy = api.http.put(
        "/v1/schedules/broken",
        json={"workflow": "numbers", "cron": "* * * * *", "overlap": "sometimes"},
    )
    assert bad_policy.status_code == 422 and "overlap" in bad_policy.text
