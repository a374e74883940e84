"""Operator actions are recorded with who, when, what and from where, whichever way they
arrive (HTTP, the CLI, the Python client), on SQLite and PostgreSQL; what a caller sends is
stored clean and bounded, never a token's value."""

from __future__ import annotations

import getpass
import json
import socket
from typing import Any

import httpx
import pytest

from tests.fixtures import unit_flows
from tests.operations.conftest import ADMIN, READ, Wired, auth, wait_for
from wfray.domain.audit import MAX_TEXT_CHARS, AuditEntry, Origin

pytestmark = pytest.mark.timeout(120)


def entries(wired: Wired, **filters: Any) -> list[AuditEntry]:
    return list(wired.client.audit(**filters))


def slow_run(wired: Wired, seconds: float = 60.0) -> str:
    handle = wired.client.submit(unit_flows.slow, unit_flows.Nap(seconds=seconds))
    return str(handle.run_id)


def test_http_actions_are_recorded_with_the_token_name_and_client_address(
    wired: Wired, api: httpx.Client
) -> None:
    run_id = slow_run(wired)
    huge = {"reason": "r" * 1_000_000}
    refused = api.post(f"/v1/runs/{run_id}/cancel", json=huge, headers=auth(ADMIN))
    assert refused.status_code == 422  # the API bounds a reason itself: nothing was done
    hostile = "\x00<b>markup</b> [red]x[/red]\x1b[2J" + "r" * 960
    answer = api.post(
        f"/v1/runs/{run_id}/cancel",
        json={"reason": hostile, "compensate": False},
        headers=auth(ADMIN),
    )
    assert answer.status_code == 200, answer.text[:500]
    assert api.post(f"/v1/runs/{run_id}/retry", headers=auth(ADMIN)).status_code in (200, 409)
    assert api.post("/v1/runs/no-such-run/cancel", headers=auth(ADMIN)).status_code == 404
    schedule = {"workflow": "unit_single", "cron": "0 3 * * *", "input": None}
    assert api.put("/v1/schedules/nightly", json=schedule, headers=auth(ADMIN)).status_code == 200
    for verb in ("pause", "resume", "trigger"):
        assert api.post(f"/v1/schedules/nightly/{verb}", headers=auth(ADMIN)).is_success
    assert api.delete("/v1/schedules/nightly", headers=auth(ADMIN)).status_code == 204

    (cancel,) = entries(wired, action="run.cancel", target=run_id)
    assert (cancel.actor, cancel.via, cancel.address) == ("ops", "http", "127.0.0.1")
    assert cancel.outcome == f"{run_id}: applied (cancelled)"
    reason = cancel.params["reason"]
    assert reason.startswith("<b>markup</b> [red]x[/red][2Jrrr")  # markup kept as text
    assert len(reason) <= MAX_TEXT_CHARS and cancel.params["compensate"] is False
    (missing,) = entries(wired, action="run.cancel", target="no-such-run")
    assert missing.outcome.startswith("no-such-run: refused (unknown)")
    (resume,) = entries(wired, action="run.resume", target=run_id)
    assert resume.actor == "ops" and resume.outcome.startswith(run_id)
    actions = [e.action for e in entries(wired, target="nightly")]
    assert actions == [
        "schedule.delete",
        "schedule.trigger",
        "schedule.resume",
        "schedule.pause",
        "schedule.create",
    ]
    (created,) = entries(wired, action="schedule.create")
    assert created.outcome == "created" and created.params["cron"] == "0 3 * * *"
    assert "input" not in created.params
    (triggered,) = entries(wired, action="schedule.trigger")
    assert triggered.outcome.startswith("run ")


def test_token_use_is_counted_by_scope_and_the_trail_is_read_over_http_by_admins(
    wired: Wired, api: httpx.Client
) -> None:
    for _ in range(3):
        assert api.get("/v1/runs", headers=auth(READ)).status_code == 200
    assert api.post("/v1/runs/any-run/cancel", headers=auth(READ)).status_code == 403
    assert api.get("/v1/runs", headers=auth("not-a-token-" + "x" * 20)).status_code == 401

    def token_use() -> list[AuditEntry]:
        found = entries(wired, action="token.use")
        return found if len(found) >= 3 else []

    used = {(e.actor, e.params["scope"], e.outcome): e for e in wait_for(token_use)}
    granted = used[("dash", "read", "granted")]
    assert granted.params["count"] == 3 and granted.targets == ("/v1/runs",)
    assert granted.params["method"] == "GET" and granted.address == "127.0.0.1"
    assert ("dash", "admin", "denied: scope not granted") in used
    unknown = [k for k in used if k[0] == "(no valid token)"]
    assert unknown == [("(no valid token)", "read", "denied: a token was given but none matched")]
    stored = json.dumps([(e.actor, e.params, e.targets, e.outcome) for e in used.values()])
    assert READ not in stored and ADMIN not in stored and "not-a-token" not in stored

    assert api.get("/v1/audit", headers=auth(READ)).status_code == 403
    page = api.get("/v1/audit", params={"limit": 2}, headers=auth(ADMIN)).json()
    assert len(page["entries"]) == 2 and page["next_before_id"] == page["entries"][-1]["id"]
    older = api.get(
        "/v1/audit", params={"before_id": page["next_before_id"]}, headers=auth(ADMIN)
    ).json()
    assert all(e["id"] < page["next_before_id"] for e in older["entries"])
    only = api.get(
        "/v1/audit", params={"action": "token.use", "actor": "dash"}, headers=auth(ADMIN)
    )
    assert {e["actor"] for e in only.json()["entries"]} == {"dash"}
    assert (
        api.get("/v1/audit", params={"action": "drop table"}, headers=auth(ADMIN)).status_code
        == 422
    )


def test_the_python_client_is_recorded_as_client_unless_it_says_who(wired: Wired) -> None:
    client = wired.client
    first, second = slow_run(wired), slow_run(wired)
    assert client.cancel(first, "\x00" + "1 MB " * 200_000).applied
    client.origin = Origin("billing-bot", "client", "worker-7")
    assert client.cancel(second, "named").applied
    client.resume([first], origin=Origin("carol"))
    (default,) = entries(wired, target=first, action="run.cancel")
    assert (default.actor, default.via, default.address) == (
        "client",
        "client",
        socket.gethostname(),
    )
    (named,) = entries(wired, target=second)
    assert (named.actor, named.address, named.params["reason"]) == (
        "billing-bot",
        "worker-7",
        "named",
    )
    (resumed,) = entries(wired, target=first, action="run.resume")
    assert resumed.actor == "carol"


def test_the_cli_is_recorded_as_the_os_user_on_this_host(
    wired: Wired, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from wfray.entrypoints import cli, cli_instance

    monkeypatch.setenv("WFRAY_DATABASE_URL", wired.url)
    monkeypatch.setenv("WFRAY_DATA_DIR", str(tmp_path / "cli"))
    monkeypatch.setattr(cli_instance, "read_instance", lambda settings: None)
    monkeypatch.setenv("RAY_ADDRESS", "ray://stand-in")
    monkeypatch.setattr(cli_instance, "_attach", lambda settings, address: wired.client)
    run_id = slow_run(wired)
    assert cli.main(["cancel", run_id, "--reason", "night shift [bold]x[/bold]"]) == 0
    assert cli.main(["retention", "--older-than", "30d"]) == 0
    capsys.readouterr()

    (cancel,) = entries(wired, action="run.cancel", target=run_id)
    who = (getpass.getuser(), "cli", socket.gethostname())
    assert (cancel.actor, cancel.via, cancel.address) == who
    (retention,) = entries(wired, action="retention")
    assert (retention.actor, retention.via) == who[:2]
    assert retention.params["older_than"] == "30 days, 0:00:00"
    assert retention.outcome.startswith("0 runs, 0 tasks")

    assert cli.main(["audit", "--json", "--action", "run.cancel"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [e["targets"] for e in shown] == [[run_id]]
    assert cli.main(["audit", "--actor", getpass.getuser(), "--limit", "1"]) == 0
    table = capsys.readouterr().out
    assert "retention" in table and "older entries: --before-id" in table
    assert cli.main(["audit"]) == 0
    assert "[bold]x[/bold]" not in capsys.readouterr().out  # reasons are in params, not shown
    assert cli.main(["audit", "--limit", "0"]) == 2
