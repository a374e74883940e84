"""Bounded reads over HTTP: a run's detail and logs come in pages, log lines are cut to a
length, a followed stream ends after its time and one token holds few of them, and a queue
must be declared."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.security._api_support import ADMIN, READ, SecuredApi, auth, secured_api, wait_for
from wfray.entrypoints.http.runs import DETAIL_PAGE as PAGE_DEFAULT

__all__ = ["secured_api"]

FINISHED = {"completed", "failed", "cancelled", "compensated", "compensation_failed"}


def start(api: SecuredApi, workflow: str, input: Any = None, **extra: Any) -> str:
    answer = api.http.post(
        "/v1/runs", json={"workflow": workflow, "input": input, **extra}, headers=auth(ADMIN)
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["run_id"])


def finished(api: SecuredApi, run_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        detail: dict[str, Any] = api.http.get(f"/v1/runs/{run_id}", headers=auth(READ)).json()
        return detail if detail["run"]["status"] in FINISHED else None

    result: dict[str, Any] = wait_for(done, what=f"run {run_id} to finish")
    return result


def test_a_runs_tasks_and_attempts_come_in_pages(secured_api: SecuredApi) -> None:
    run_id = start(secured_api, "numbers", {"count": 5})  # make, square x5 (+ group), total
    whole = finished(secured_api, run_id)
    expected = {(t["step"], t["map_index"]) for t in whole["tasks"]}
    assert len(expected) == 8 and whole["next_cursor"] is None

    tasks: list[tuple[str, int]] = []
    attempts = 0
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = secured_api.http.get(f"/v1/runs/{run_id}", params=params, headers=auth(READ))
        body = page.raise_for_status().json()
        assert len(body["tasks"]) <= 3 and len(body["attempts"]) <= 3
        tasks += [(t["step"], t["map_index"]) for t in body["tasks"]]
        attempts += len(body["attempts"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(tasks) == sorted(expected)
    assert attempts == len(whole["attempts"])
    bad = secured_api.http.get(f"/v1/runs/{run_id}", params={"cursor": "x"}, headers=auth(READ))
    assert bad.status_code == 422


def test_logs_are_read_after_a_line_id_and_cut_to_their_length(secured_api: SecuredApi) -> None:
    run_id = start(secured_api, "shout", {"lines": 5, "long_chars": 50_000})
    finished(secured_api, run_id)
    url = f"/v1/runs/{run_id}/logs"

    lines = secured_api.http.get(url, headers=auth(READ)).raise_for_status().json()
    first = secured_api.http.get(url, params={"limit": 2}, headers=auth(READ)).json()
    rest = secured_api.http.get(url, params={"after": first[-1]["id"]}, headers=auth(READ)).json()

    assert [line["message"] for line in lines[:5]] == [f"line {i}" for i in range(5)]
    assert [line["id"] for line in first + rest] == [line["id"] for line in lines]
    assert len(first) == 2
    long_line = lines[5]["message"]
    # cut to the 1,000 characters allowed, the note included, saying how many were cut
    assert long_line.startswith("x" * 900) and len(long_line) == 1000
    kept = long_line.index("...")
    assert long_line.endswith(f"... [{50_000 - kept} more characters cut]")


def test_a_followed_stream_ends_after_its_time_and_resumes_after_the_last_id(
    secured_api: SecuredApi, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    run_id = start(secured_api, "held", {"gate": str(gate)})
    url = f"{secured_api.url}/v1/runs/{run_id}/logs"
    wait_for(lambda: secured_api.http.get(url, headers=auth(READ)).json(), what="the first line")
    try:
        started = time.monotonic()
        with httpx.stream(
            "GET", url, params={"follow": "true"}, headers=auth(READ), timeout=30
        ) as stream:
            got = [json.loads(line) for line in stream.iter_lines() if line]
        took = time.monotonic() - started
        # The run still waits at the gate: the stream ended on its own time (5 s here).
        assert 4.5 < took < 25, took
        assert [line["message"] for line in got] == ["waiting at the gate"]
        status = secured_api.http.get(f"/v1/runs/{run_id}", headers=auth(READ)).json()
        assert status["run"]["status"] == "running"
        (gate / "open").touch()
        with httpx.stream(
            "GET",
            url,
            params={"follow": "true", "after": got[-1]["id"]},
            headers=auth(READ),
            timeout=30,
        ) as stream:
            again = [json.loads(line) for line in stream.iter_lines() if line]
        assert all(line["id"] > got[-1]["id"] for line in again)
        assert "waiting at the gate" not in [line["message"] for line in again]
    finally:
        (gate / "open").touch()


def test_one_token_holds_at_most_its_number_of_streams(
    secured_api: SecuredApi, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    run_id = start(secured_api, "held", {"gate": str(gate)})
    url = f"{secured_api.url}/v1/runs/{run_id}/logs"
    follow = {"follow": "true"}
    try:
        with (
            httpx.Client(timeout=30) as http,
            http.stream("GET", url, params=follow, headers=auth(READ)) as one,
            http.stream("GET", url, params=follow, headers=auth(READ)) as two,
        ):
            assert one.status_code == two.status_code == 200
            third = httpx.get(url, params=follow, headers=auth(READ), timeout=30)
            other_token = httpx.get(url, params=follow, headers=auth(ADMIN), timeout=30)
            assert third.status_code == 429, third.text
            assert third.json()["error"]["code"] == "too_many_streams"
            assert int(third.headers["retry-after"]) >= 1
            # another token has streams of its own (this one ends with the stream's time)
            assert other_token.status_code == 200
        # the slots come back once the streams end
        wait_for(lambda: _stream_status(url) == 200, timeout_s=30, what="a slot to come back")
    finally:
        (gate / "open").touch()


def _stream_status(url: str) -> int:
    with httpx.stream(
        "GET", url, params={"follow": "true"}, headers=auth(READ), timeout=30
    ) as answer:
        return answer.status_code


def test_a_queue_not_declared_is_refused_naming_the_declared_ones(
    secured_api: SecuredApi,
) -> None:
    answer = secured_api.http.post(
        "/v1/runs", json={"workflow": "noop", "queue": "invented"}, headers=auth(ADMIN)
    )
    declared = secured_api.http.post(
        "/v1/runs", json={"workflow": "noop", "queue": "declared_q"}, headers=auth(ADMIN)
    )
    schedule = secured_api.http.put(
        "/v1/schedules/never",
        json={"workflow": "noop", "cron": "0 0 1 1 *", "queue": "invented"},
        headers=auth(ADMIN),
    )

    assert answer.status_code == 422
    (problem,) = answer.json()["detail"]
    assert problem["loc"] == ["body", "queue"]
    assert "'invented'" in problem["msg"] and "declared_q, default" in problem["msg"]
    assert declared.status_code == 202
    assert schedule.status_code == 422


def test_a_long_history_is_answered_one_page_at_a_time_by_default(
    secured_api: SecuredApi,
) -> None:
    # 200 items failing nine times each: 2,002 attempts, 203 tasks, on the API's SQLite store
    run_id = start(secured_api, "long_history", {"items": 200, "attempts": 10})
    (view,) = secured_api.client.wait([run_id], timeout=600)  # a loaded machine: generous
    assert view.status.value == "completed", view
    answer = secured_api.http.get(f"/v1/runs/{run_id}", headers=auth(READ))
    first = answer.raise_for_status().json()  # the default answer: no limit, no cursor
    assert 0 < len(first["attempts"]) <= PAGE_DEFAULT and len(first["tasks"]) <= PAGE_DEFAULT
    assert first["next_cursor"], "a page that is not the last says how to read on"

    attempts = [(a["step"], a["map_index"], a["attempt"]) for a in first["attempts"]]
    cursor = first["next_cursor"]
    pages = 1
    while cursor is not None and pages < 20:
        page = secured_api.http.get(
            f"/v1/runs/{run_id}", params={"cursor": cursor}, headers=auth(READ)
        )
        body = page.raise_for_status().json()
        assert len(body["attempts"]) <= PAGE_DEFAULT
        attempts += [(a["step"], a["map_index"], a["attempt"]) for a in body["attempts"]]
        cursor = body["next_cursor"]
        pages += 1
    assert cursor is None, "the pages end"
    assert len(attempts) == len(set(attempts)) == 2 * 1 + 200 * 10  # each once, none lost
    assert pages == -(-len(attempts) // PAGE_DEFAULT)
