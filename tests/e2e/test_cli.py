"""The `wfray` command, run as a real subprocess against a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures import flows
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.sqlalchemy.store import SqlRunStore
from wfray.application.coordinator import Coordinator
from wfray.application.messages import SubmitRequest
from wfray.bootstrap import SystemClock


def fill_store(url: str) -> None:
    async def run() -> None:
        store = SqlRunStore(url)
        executor = InlineExecutor()
        coordinator = Coordinator(store, {"cpu": executor, "io": executor}, SystemClock())
        await coordinator.start()
        await coordinator.register([flows.numbers.schema, flows.flaky.__wfray_workflow__.schema])
        await coordinator.submit(
            [
                SubmitRequest("run-ok", "numbers", "", '{"count": 3}'),
                SubmitRequest("run-flaky", "flaky", "", "{}"),
            ]
        )
        await asyncio.wait_for(coordinator.wait(["run-ok", "run-flaky"], 30), 40)
        await coordinator.stop()
        store.close()

    asyncio.run(run())


def wfray_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WFRAY_DATABASE_URL": url}
    exe = Path(sys.executable).with_name("wfray")
    return subprocess.run(
        [str(exe), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_lists_shows_and_prints_logs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    fill_store(url)

    listed = wfray_cli(url, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    runs = {r["run_id"]: r for r in json.loads(listed.stdout)}
    assert runs["run-ok"]["status"] == "completed"

    shown = wfray_cli(url, "show", "run-flaky", "--json")
    detail = json.loads(shown.stdout)
    assert [a["status"] for a in detail["attempts"]] == ["failed", "failed", "succeeded"]

    table = wfray_cli(url, "show", "run-ok")
    assert table.returncode == 0
    assert "square[2]" in table.stdout

    logs = wfray_cli(url, "logs", "run-ok", "--step", "square")
    assert "squaring 2" in logs.stdout


def test_cli_unknown_run_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = wfray_cli(url, "show", "nope")
    assert result.returncode == 1
    assert "no run with id 'nope'" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
