"""Analytics tests: Arrow reading, DuckDB views, Parquet export, retention, notebooks.

Shared builders live here (this tier has no conftest of its own): `known_history` writes a
small, hand-checked history straight into a migrated store.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def known_rows() -> dict[str, list[dict[str, Any]]]:
    """One completed run with a retried step and one compensated run, row by row."""
    run = {
        "version": "v1",
        "input_json": '{"customer": 7}',
        "queue": "default",
        "priority": 0,
        "trigger": "client",
    }
    task = {"pool": "cpu", "queue": "default", "priority": 0, "failures": 0, "lost": 0}
    attempt = {"executor": "cpu-0", "incarnation": "inc-1", "kind": "step", "host": "w1"}
    return {
        "runs": [
            {
                **run,
                "run_id": "r-ok",
                "workflow": "invoice",
                "status": "completed",
                "created_at": T0,
                "started_at": T0 + timedelta(seconds=1),
                "finished_at": T0 + timedelta(seconds=9),
            },
            {
                **run,
                "run_id": "r-undone",
                "workflow": "sync",
                "status": "compensated",
                "created_at": T0 + timedelta(days=1),
                "finished_at": T0 + timedelta(days=1, seconds=5),
                "error": "step push failed",
            },
        ],
        "tasks": [
            {
                **task,
                "run_id": "r-ok",
                "step": "render",
                "map_index": -1,
                "status": "completed",
                "created_at": T0,
                "seq": 1,
                "attempts": 2,
                "failures": 1,
            },
            {
                **task,
                "run_id": "r-undone",
                "step": "push",
                "map_index": 0,
                "status": "compensated",
                "created_at": T0 + timedelta(days=1),
                "seq": 2,
                "attempts": 2,
            },
        ],
        "attempts": [
            {
                **attempt,
                "run_id": "r-ok",
                "step": "render",
                "map_index": -1,
                "attempt": 1,
                "status": "failed",
                "queued_at": T0,
                "started_at": T0 + timedelta(seconds=1),
                "finished_at": T0 + timedelta(seconds=3),
                "node_id": "n1",
                "pid": 11,
                "error_type": "Timeout",
                "resources_json": json.dumps({"CPU": 1.5, "io": 1}),
            },
            {
                **attempt,
                "run_id": "r-ok",
                "step": "render",
                "map_index": -1,
                "attempt": 2,
                "status": "succeeded",
                "queued_at": T0 + timedelta(seconds=3),
                "started_at": T0 + timedelta(seconds=4),
                "finished_at": T0 + timedelta(seconds=8),
                "node_id": "n2",
                "pid": 12,
                "resources_json": json.dumps({"CPU": 1}),
            },
            {
                **attempt,
                "run_id": "r-undone",
                "step": "push",
                "map_index": 0,
                "attempt": 2,
                "status": "succeeded",
                "kind": "compensation",
                "queued_at": T0 + timedelta(days=1),
                "started_at": T0 + timedelta(days=1),
                "finished_at": T0 + timedelta(days=1, seconds=0.5),
                "node_id": "n1",
                "resources_json": None,
            },
        ],
        "logs": [
            {
                "run_id": "r-ok",
                "step": "render",
                "map_index": -1,
                "attempt": 1,
                "ts": T0 + timedelta(seconds=2),
                "level": "ERROR",
                "logger": "step",
                "message": "timed out",
                "line_key": "k1",
            },
            {
                "run_id": "r-ok",
                "step": "render",
                "map_index": -1,
                "attempt": 2,
                "ts": T0 + timedelta(seconds=5),
                "level": "INFO",
                "logger": "step",
                "message": "rendered ünïcode",
                "line_key": "k2",
            },
        ],
    }


def write_known_history(url: str) -> dict[str, list[dict[str, Any]]]:
    """Migrate the store at `url`, insert `known_rows()` and return them."""
    from wfray.adapters.sqlalchemy import migrate
    from wfray.adapters.sqlalchemy.engine import create_engine
    from wfray.adapters.sqlalchemy.tables import metadata

    rows = known_rows()
    engine = create_engine(url)
    try:
        migrate.upgrade(engine)
        with engine.begin() as conn:
            for name in ("runs", "tasks", "attempts", "logs"):
                table = metadata.tables[name]
                # every column named (NULL when absent) but the generated log id
                names = [c.name for c in table.columns if c.name != "id"]
                conn.execute(table.insert(), [{n: row.get(n) for n in names} for row in rows[name]])
    finally:
        engine.dispose()
    return rows
