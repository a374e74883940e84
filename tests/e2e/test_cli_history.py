"""`wfray show` on a run with a long history (2,002 attempts), against a real SQLite store:
one bounded page by default, saying how much it left out; everything only when asked.

The store is filled through the real coordinator (inline executor), no Ray: 200 mapped
items, each failing nine times before it succeeds.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fixtures import flows
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.sqlalchemy.store import SqlRunStore
from wfray.application.batch import Batch
from wfray.application.messages import SubmitRequest
from wfray.bootstrap import SystemClock
from wfray.coordinator.coordinator import Coordinator
from wfray.domain.records import RunRecord
from wfray.domain.status import RunStatus
from wfray.entrypoints.cli_show import SHOW_LIMIT

RUN_ID = "run-long"
ITEMS, ATTEMPTS = 200, 10
TASKS = 1 + 1 + ITEMS + 1  # history_of, the fan-out's group row, its items, retried_total
ALL_ATTEMPTS = 1 + ITEMS * ATTEMPTS + 1
CHILDREN = 30
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fill_store(url: str) -> None:
    async def run() -> None:
        store = SqlRunStore(url)
        executor = InlineExecutor()
        coordinator = Coordinator(store, {"cpu": executor, "io": executor}, SystemClock())
        await coordinator.start()
        await coordinator.register([flows.long_history.schema])
        shape = json.dumps({"items": ITEMS, "attempts": ATTEMPTS})
        await coordinator.submit([SubmitRequest(RUN_ID, "long_history", "", shape)])
        (view,) = await asyncio.wait_for(coordinator.wait([RUN_ID], 120), 130)
        assert view.status.value == "completed", view
        await coordinator.stop()
        children = Batch()
        for i in range(CHILDREN):  # as its steps would have started them, one a second
            children.insert_run(
                RunRecord(
                    f"{RUN_ID}-child-{i:02d}", "long_history", "1", RunStatus.COMPLETED, "null",
                    T0 + timedelta(seconds=i), parent_run_id=RUN_ID,
                )
            )  # fmt: skip
        store.commit(children)
        store.close()

    asyncio.run(run())


def wfray_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("wfray")
    return subprocess.run(
        [str(exe), *args],
        # no RAY_ADDRESS: a cluster elsewhere on the host must not be found by accident;
        # a wide terminal, so that one row of the tree is one line
        env={**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def long_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("cli-history")
    url = f"sqlite:///{folder / 'cli.db'}"
    fill_store(url)
    return {"WFRAY_DATABASE_URL": url, "WFRAY_DATA_DIR": str(folder / "data"), "COLUMNS": "300"}


def attempt_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if re.search(r"#\d+ (failed|succeeded)", line)]


def test_show_prints_one_bounded_page_and_says_how_much_more_there_is(
    long_run: dict[str, str],
) -> None:
    shown = wfray_cli(long_run, "show", RUN_ID)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    # the run's line, at most SHOW_LIMIT task and attempt rows, the line saying what is left
    assert len(lines) <= SHOW_LIMIT + 2, len(lines)
    more = re.search(r"([\d,]+) more tasks and ([\d,]+) more attempts not shown", shown.stdout)
    assert more, shown.stdout[-2000:]
    hidden_tasks, hidden_attempts = (int(n.replace(",", "")) for n in more.groups())
    shown_attempts = len(attempt_lines(shown.stdout))
    assert 0 < shown_attempts < SHOW_LIMIT
    assert hidden_attempts == ALL_ATTEMPTS - shown_attempts
    assert 0 < hidden_tasks < TASKS
    assert "--all" in shown.stdout and "--limit" in shown.stdout
    # the first rows in DAG order: the source step, then the first items with their retries
    assert "history_of completed" in shown.stdout
    assert "retried[0] completed" in shown.stdout and "#10 succeeded" in shown.stdout


def test_show_json_is_the_same_page_with_what_it_left_out(long_run: dict[str, str]) -> None:
    shown = wfray_cli(long_run, "show", RUN_ID, "--json", "--limit", "50")
    assert shown.returncode == 0, shown.stderr
    page = json.loads(shown.stdout)
    assert len(page["tasks"]) + len(page["attempts"]) == 50
    assert page["attempts_not_shown"] == ALL_ATTEMPTS - len(page["attempts"])
    assert page["tasks_not_shown"] == TASKS - len(page["tasks"])


def test_show_json_reads_the_first_child_runs_and_says_whether_there_are_more(
    long_run: dict[str, str],
) -> None:
    few = json.loads(wfray_cli(long_run, "show", RUN_ID, "--json", "--limit", "10").stdout)
    names = [f"{RUN_ID}-child-{i:02d}" for i in range(CHILDREN)]
    assert [child["run_id"] for child in few["children"]] == names[:10]  # oldest first
    assert few["more_child_runs"] is True
    every = json.loads(wfray_cli(long_run, "show", RUN_ID, "--json", "--limit", "40").stdout)
    assert [child["run_id"] for child in every["children"]] == names
    assert every["more_child_runs"] is False


def test_show_all_and_a_large_limit_print_everything(long_run: dict[str, str]) -> None:
    everything = wfray_cli(long_run, "show", RUN_ID, "--all")
    assert everything.returncode == 0, everything.stderr
    assert len(attempt_lines(everything.stdout)) == ALL_ATTEMPTS
    assert "not shown" not in everything.stdout
    assert "retried_total completed" in everything.stdout

    limited = wfray_cli(long_run, "show", RUN_ID, "--limit", str(TASKS + ALL_ATTEMPTS))
    assert limited.returncode == 0, limited.stderr
    assert len(attempt_lines(limited.stdout)) == ALL_ATTEMPTS
    assert "not shown" not in limited.stdout


@pytest.mark.parametrize("limit", ["0", "-5", "many"])
def test_a_bad_limit_is_a_usage_error(long_run: dict[str, str], limit: str) -> None:
    result = wfray_cli(long_run, "show", RUN_ID, "--limit", limit)
    assert result.returncode == 2
    assert "--limit" in result.stderr
    assert "Traceback" not in result.stderr
