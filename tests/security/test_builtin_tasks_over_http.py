"""Item 1 of issue 13: the built-in tasks are closed over HTTP unless the operator lists
them in WFRAY_API_TASKS.

Until then every built-in could be started by anyone who reached the API: the app added
`wfray.integrations` to the user's modules, and resolved a submitted name against every
workflow its process had imported, so a built-in merely imported into the user's module
(as `_integrations_support` does) was open as well, to runs and to schedules alike.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

import wfray
from tests.api.conftest import wait_finished
from tests.security._integrations_support import Served, serve_apps
from wfray.domain.errors import DefinitionError
from wfray.entrypoints.http.catalog import api_workflows
from wfray.entrypoints.http.serve import start_api

MAIL = {"sender": "a@example.org", "to": ["b@example.org"], "subject": "s", "text": "t"}
ATTACKS: dict[str, dict[str, Any]] = {
    "send_email": {"message": MAIL, "smtp": {"host": "127.0.0.1", "port": 1}},
    "http_request": {"url": "http://169.254.169.254/latest/meta-data/"},
    "render_pdf": {"template": "table", "data": {"title": "t", "columns": ["a"]}},
}


@pytest.fixture(scope="module")
def served(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve_apps(
        str(tmp_path_factory.mktemp("wfray-sec-builtins")),
        {"closed": {}, "open": {"api_tasks": ("render_pdf",)}},
    )


@pytest.fixture(scope="module")
def closed(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.urls["closed"], timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def opened(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.urls["open"], timeout=30) as http:
        yield http


def _runs(served: Served, workflow: str) -> list[Any]:
    return list(served.client.list_runs(workflow, None, 10))


@pytest.mark.parametrize("workflow", sorted(ATTACKS))
def test_an_unlisted_builtin_is_refused_and_no_run_is_stored(
    served: Served, closed: httpx.Client, workflow: str
) -> None:
    answer = closed.post("/v1/runs", json={"workflow": workflow, "input": ATTACKS[workflow]})
    assert answer.status_code == 403, answer.text
    error = answer.json()["error"]
    assert error["code"] == "workflow_not_startable"
    assert workflow in error["message"] and "WFRAY_API_TASKS" in error["message"]
    assert _runs(served, workflow) == []


def test_an_unlisted_builtin_cannot_be_scheduled(served: Served, closed: httpx.Client) -> None:
    body = {"workflow": "http_request", "cron": "* * * * *", "input": ATTACKS["http_request"]}
    answer = closed.put("/v1/schedules/exfiltrate", json=body)
    assert answer.status_code == 403, answer.text
    assert "WFRAY_API_TASKS" in answer.json()["error"]["message"]
    assert all(s.name != "exfiltrate" for s in served.client.list_schedules())


def test_the_listing_offers_the_users_workflows_only(closed: httpx.Client) -> None:
    listing = closed.get("/v1/workflows").raise_for_status().json()
    submittable = {w["name"] for w in listing if w["submittable"]}
    assert "echo" in submittable
    assert not submittable & set(ATTACKS)


def test_the_users_own_task_still_runs(closed: httpx.Client) -> None:
    answer = closed.post("/v1/runs", json={"workflow": "echo", "input": {"text": "hi"}})
    assert answer.status_code == 202, answer.text
    assert wait_finished(closed, answer.json()["run_id"])["run"]["result"] == "hi"


def test_a_listed_builtin_runs_and_only_that_one(served: Served, opened: httpx.Client) -> None:
    data = {"title": "Stock", "columns": ["item", "n"], "rows": [["bolts", "12"]]}
    body = {"workflow": "render_pdf", "input": {"template": "table", "data": data}}
    answer = opened.post("/v1/runs", json=body)
    assert answer.status_code == 202, answer.text
    detail = wait_finished(opened, answer.json()["run_id"])
    assert detail["run"]["status"] == "completed", detail["run"]["error"]
    pdf = base64.b64decode(detail["run"]["result"]["content_base64"])
    assert "bolts" in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    other = opened.post("/v1/runs", json={"workflow": "send_email", "input": ATTACKS["send_email"]})
    assert other.status_code == 403, other.text


def test_a_listed_builtin_still_names_no_code(served: Served, opened: httpx.Client) -> None:
    before = len(_runs(served, "render_pdf"))
    body = {"workflow": "render_pdf", "input": {"template": "subprocess:getoutput", "data": {}}}
    answer = opened.post("/v1/runs", json=body)
    assert answer.status_code == 422, answer.text
    assert "template" in answer.text
    assert len(_runs(served, "render_pdf")) == before


def test_api_tasks_are_read_from_the_environment_and_checked() -> None:
    env = {"WFRAY_API_TASKS": "render_pdf, send_email,"}
    settings = wfray.load_settings(env=env, data_dir="/tmp/wfray-unused")
    assert settings.api_tasks == ("render_pdf", "send_email")
    assert wfray.load_settings(env={}, data_dir="/tmp/wfray-unused").api_tasks == ()
    wrong = settings.with_(api_tasks=("render_pdf", "shell"))
    with pytest.raises(DefinitionError, match="WFRAY_API_TASKS names 'shell'"):
        api_workflows(wrong)
    with pytest.raises(DefinitionError, match="not built-in tasks"):
        start_api(wrong)  # refused before Serve is touched
