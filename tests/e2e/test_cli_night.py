"""The `wfray` command in an 80-column terminal: short run ids, prefixes, hostile text.

Real subprocesses of the installed `wfray` script with COLUMNS set, against stores filled
through the real coordinator (inline executor): SQLite, and PostgreSQL for the prefixes.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.e2e.test_cli import wfray_cli
from tests.fixtures import backup_flows, flows
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.sqlalchemy.store import SqlRunStore
from wfray.application.messages import SubmitRequest
from wfray.bootstrap import SystemClock
from wfray.coordinator.coordinator import Coordinator

# Two ids share their first 10 characters: their prefixes need 11.
TWIN_A = "5e1f0c9a2b" + "a" * 22
TWIN_B = "5e1f0c9a2b" + "b" * 22
LONELY = "9d8c7b6a5f4e3d2c1b0a998877665544"
HOSTILE = "e0" * 16
NASTY = "\x1b[2J\x1b]0;pwned\x07boom\x00\r\nsecond line \u202eevil [red]markup[/red]"
IDS = [TWIN_A, TWIN_B, LONELY, HOSTILE]


def fill(url: str, nasty: str) -> None:
    async def run() -> None:
        store = SqlRunStore(url)
        executor = InlineExecutor()
        coordinator = Coordinator(store, {"cpu": executor, "io": executor}, SystemClock())
        await coordinator.start()
        quick = backup_flows.quick.__wfray_workflow__.schema
        hostile = backup_flows.hostile.__wfray_workflow__.schema
        await coordinator.register([flows.numbers.schema, quick, hostile])
        await coordinator.submit(
            [
                SubmitRequest(TWIN_A, "numbers", "", '{"count": 2}'),
                SubmitRequest(TWIN_B, "quick", "", '{"n": 1}'),
                SubmitRequest(LONELY, "quick", "", '{"n": 2}'),
                SubmitRequest(HOSTILE, "hostile", "", json.dumps({"message": nasty})),
            ]
        )
        await asyncio.wait_for(coordinator.wait(IDS, 30), 40)
        await coordinator.stop()
        store.close()

    asyncio.run(run())


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("night")
    url = f"sqlite:///{folder / 'night.db'}"
    fill(url, NASTY)
    return {"WFRAY_DATABASE_URL": url, "WFRAY_DATA_DIR": str(folder / "data"), "COLUMNS": "80"}


def lines_of(text: str) -> list[str]:
    return [line for line in text.split("\n") if line]


@pytest.mark.parametrize("columns", [80, 50, 200])
def test_runs_fit_the_terminal_with_short_ids_and_escaped_text(
    night: dict[str, str], columns: int
) -> None:
    listed = wfray_cli({**night, "COLUMNS": str(columns)}, "runs")
    assert listed.returncode == 0, listed.stderr
    rows = lines_of(listed.stdout)
    assert len(rows) == 1 + len(IDS), listed.stdout  # a header, then one line per run
    assert max(len(row) for row in rows) <= columns, listed.stdout
    for char in ("\x1b", "\x00", "\r", "\x07", "\u202e"):
        assert char not in listed.stdout
    shown = {row.split()[0] for row in rows[1:]}
    assert shown == {TWIN_A[:11], TWIN_B[:11], LONELY[:11], HOSTILE[:11]}
    status = rows[0].split().index("status") if "status" in rows[0] else None
    if columns >= 80:
        assert status is not None
        hostile_row = next(row for row in rows if row.startswith(HOSTILE[:11]))
        assert "failed" in hostile_row.split()
    if columns >= 120:
        assert "trigger" in rows[0]
        hostile_row = next(row for row in rows if row.startswith(HOSTILE[:11]))
        assert "\\x1b[2J\\x1b]0;pwned\\x07boom" in hostile_row  # the NUL: stored as U+FFFD
        assert "\\r\\nsecond line \\u202eevil [red]markup" in hostile_row


def test_a_prefix_names_a_run_wherever_a_run_id_is_taken(night: dict[str, str]) -> None:
    shown = wfray_cli(night, "show", TWIN_A[:11], "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["run"]["run_id"] == TWIN_A
    assert wfray_cli(night, "watch", LONELY[:4], "--json").returncode == 0
    logs = wfray_cli(night, "logs", TWIN_A[:12], "--step", "square")
    assert "squaring 1" in logs.stdout
    tree = wfray_cli(night, "show", HOSTILE[:6])
    assert tree.returncode == 0, tree.stderr
    assert "\x1b" not in tree.stdout and "\\x1b[2J" in tree.stdout
    assert "[red]markup[/red]" in tree.stdout  # markup in the data is text, not style


def test_an_ambiguous_prefix_lists_the_candidates_and_exits_2(night: dict[str, str]) -> None:
    for command in (["show"], ["logs"], ["watch"], ["cancel"], ["retry"]):
        result = wfray_cli(night, *command, "5e1f")
        assert result.returncode == 2, (command, result.stderr)
        assert "ambiguous" in result.stderr
        assert TWIN_A in result.stderr and TWIN_B in result.stderr
        assert "Traceback" not in result.stderr


def test_an_unknown_or_hostile_id_says_so_and_exits_3(night: dict[str, str]) -> None:
    for typed in ("nope", "\x1b[31mred", "[/red]", "5e1f0c9a2bc"):
        result = wfray_cli(night, "show", typed)
        assert result.returncode == 3, (typed, result.stderr)
        assert "no run with id" in result.stderr
        assert "\x1b" not in result.stderr
        assert "Traceback" not in result.stderr
    assert wfray_cli(night, "show", "").returncode == 2


@pytest.mark.postgres
def test_prefixes_resolve_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    fill(postgres_url, "plain error")
    env = {"WFRAY_DATABASE_URL": postgres_url, "WFRAY_DATA_DIR": str(tmp_path), "COLUMNS": "80"}
    shown = wfray_cli(env, "show", TWIN_B[:11], "--json")
    assert json.loads(shown.stdout)["run"]["run_id"] == TWIN_B, shown.stderr
    ambiguous = wfray_cli(env, "show", TWIN_A[:10])
    assert ambiguous.returncode == 2 and TWIN_B in ambiguous.stderr
    listed = wfray_cli(env, "runs")
    assert {row.split()[0] for row in lines_of(listed.stdout)[1:]} == {
        run_id[:11] for run_id in IDS
    }


def test_acting_without_the_store_passes_the_id_as_typed(tmp_path: Path) -> None:
    """The coordinator knows run ids whole: a machine that reaches Ray but not the database
    can still cancel by full id (here neither is reachable: the answer is about Ray)."""
    env = {
        "WFRAY_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
        "WFRAY_DATA_DIR": str(tmp_path),
    }
    result = wfray_cli(env, "cancel", LONELY)
    assert result.returncode == 4, result.stderr
    assert "wfray is not running" in result.stderr
