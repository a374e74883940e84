"""The `wfray` command's read side, run as a real subprocess against a real SQLite store.

The store is filled through the real coordinator (inline executor); no Ray is needed, which is
the point: read commands answer from the store alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import flows
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.sqlalchemy.store import SqlRunStore
from wfray.application.messages import SubmitRequest
from wfray.bootstrap import SystemClock
from wfray.coordinator.coordinator import Coordinator

RUN_IDS = ["run-ok", "run-flaky", "run-failed"]


def fill_store(url: str, missing: Path) -> None:
    async def run() -> None:
        store = SqlRunStore(url)
        executor = InlineExecutor()
        coordinator = Coordinator(store, {"cpu": executor, "io": executor}, SystemClock())
        await coordinator.start()
        await coordinator.register(
            [
                flows.numbers.schema,
                flows.flaky.__wfray_workflow__.schema,
                flows.needs_marker.__wfray_workflow__.schema,
            ]
        )
        await coordinator.submit(
            [
                SubmitRequest("run-ok", "numbers", "", '{"count": 3}'),
                SubmitRequest("run-flaky", "flaky", "", "{}"),
                SubmitRequest(
                    "run-failed", "needs_marker", "", json.dumps({"marker": str(missing)})
                ),
            ]
        )
        await asyncio.wait_for(coordinator.wait(RUN_IDS, 30), 40)
        await coordinator.stop()
        store.close()

    asyncio.run(run())


def wfray_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("wfray")
    return subprocess.run(
        [str(exe), *args],
        # no RAY_ADDRESS: a cluster elsewhere on the host must not be found by accident
        env={**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("cli")
    url = f"sqlite:///{folder / 'cli.db'}"
    fill_store(url, folder / "never-created")
    env = {"WFRAY_DATABASE_URL": url, "WFRAY_DATA_DIR": str(folder / "data")}
    return env


def test_cli_lists_shows_and_prints_logs(filled: dict[str, str]) -> None:
    listed = wfray_cli(filled, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    runs = {r["run_id"]: r for r in json.loads(listed.stdout)}
    assert {rid: runs[rid]["status"] for rid in RUN_IDS} == {
        "run-ok": "completed",
        "run-flaky": "completed",
        "run-failed": "failed",
    }

    shown = wfray_cli(filled, "show", "run-flaky", "--json")
    detail = json.loads(shown.stdout)
    assert [a["status"] for a in detail["attempts"]] == ["failed", "failed", "succeeded"]

    tree = wfray_cli(filled, "show", "run-ok")
    assert tree.returncode == 0, tree.stderr
    # the DAG as a tree: each step with its status, the fan-out's items under their step,
    # and what a step waits for
    assert "square[2] completed" in tree.stdout
    assert "total completed" in tree.stdout
    assert "<- square" in tree.stdout
    assert "#1 succeeded" in tree.stdout

    logs = wfray_cli(filled, "logs", "run-ok", "--step", "square")
    assert "squaring 2" in logs.stdout
    lines = [
        json.loads(line)
        for line in wfray_cli(filled, "logs", "run-ok", "--json").stdout.split("\n")
        if line
    ]
    assert sorted(line["message"] for line in lines) == ["squaring 0", "squaring 1", "squaring 2"]


def test_cli_filters_runs_by_workflow_status_and_time(filled: dict[str, str]) -> None:
    def run_ids(*args: str) -> list[str]:
        result = wfray_cli(filled, "runs", "--json", *args)
        assert result.returncode == 0, result.stderr
        return sorted(r["run_id"] for r in json.loads(result.stdout))

    assert run_ids("--workflow", "numbers") == ["run-ok"]
    assert run_ids("--status", "failed") == ["run-failed"]
    assert run_ids("--since", "1h") == sorted(RUN_IDS)
    assert run_ids("--until", "1h") == []
    assert run_ids("--since", "2000-01-01T00:00:00", "--limit", "1") != []

    bad = wfray_cli(filled, "runs", "--since", "yesterday")
    assert bad.returncode == 2
    assert "--since: expected an ISO time" in bad.stderr


def test_watch_exits_zero_for_a_completed_run_and_one_for_a_failed_run(
    filled: dict[str, str],
) -> None:
    ok = wfray_cli(filled, "watch", "run-ok", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["status"] == "completed"

    failed = wfray_cli(filled, "watch", "run-failed", "--json")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["status"] == "failed"
    assert "marker is not there yet" in json.loads(failed.stdout)["error"]


def test_workflows_and_dead_letter_as_json(filled: dict[str, str]) -> None:
    listed = wfray_cli(filled, "workflows", "--json")
    assert listed.returncode == 0, listed.stderr
    by_name = {w["name"]: w for w in json.loads(listed.stdout)}
    assert [s["name"] for s in by_name["numbers"]["steps"]] == ["make", "square", "total"]

    dead = wfray_cli(filled, "dead-letter", "--json")
    assert dead.returncode == 0, dead.stderr
    assert json.loads(dead.stdout) == []  # no compensation failed in this store


def test_export_writes_parquet_tables(filled: dict[str, str], tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    result = wfray_cli(filled, "export", "--parquet", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts["runs"] == 3
    files = {path.stem: path for path in tmp_path.rglob("*.parquet")}
    assert pq.read_table(files["runs"]).num_rows == 3


@pytest.mark.parametrize("command", ["show", "logs", "watch"])
def test_unknown_run_exits_3_with_a_clear_message(filled: dict[str, str], command: str) -> None:
    result = wfray_cli(filled, command, "nope")
    assert result.returncode == 3
    assert "no run with id 'nope'" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_bad_json_input_exits_2_before_anything_is_sent(
    filled: dict[str, str], tmp_path: Path
) -> None:
    inline = wfray_cli(filled, "submit", "numbers", "--input", "{count: 3")
    assert inline.returncode == 2
    assert "--input: not valid JSON" in inline.stderr

    missing = wfray_cli(filled, "submit", "numbers", "--input", f"@{tmp_path / 'none.json'}")
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
    assert "Traceback" not in inline.stderr + missing.stderr


def test_acting_without_a_running_wfray_exits_4(filled: dict[str, str]) -> None:
    result = wfray_cli(filled, "cancel", "run-ok")
    assert result.returncode == 4
    assert "wfray is not running" in result.stderr
    assert "wfray start" in result.stderr


def test_usage_errors_exit_2_and_help_lists_the_exit_codes(filled: dict[str, str]) -> None:
    assert wfray_cli(filled, "frobnicate").returncode == 2
    assert wfray_cli(filled, "retry").returncode == 2  # neither runs nor --failed
    helped = wfray_cli(filled, "--help")
    assert helped.returncode == 0
    for line in ("0  ok", "1  the run failed", "2  usage error", "3  not found", "4  wfray not"):
        assert line in helped.stdout
