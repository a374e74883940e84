"""A DuckDB connection over the store's history, loaded through Arrow.

DuckDB's own sqlite and postgres extensions download at run time, which a machine without
internet cannot do, so the history travels as Arrow record batches instead: each table is
streamed batch by batch into a DuckDB table of the same name (a snapshot of the store at
`connect` time). DuckDB keeps them compressed and, with a database file, spills to disk.
"""

from __future__ import annotations

import duckdb

from wfray.adapters.sqlalchemy.arrow import DEFAULT_BATCH, TABLES, HistoryFilter, snapshot

# Wall time and resource-seconds of every attempt that started and finished.
ATTEMPT_COSTS = """
CREATE VIEW attempt_costs AS
WITH timed AS (
    SELECT a.*, r.workflow,
           epoch(a.finished_at) - epoch(a.started_at) AS wall_seconds
    FROM attempts a JOIN runs r USING (run_id)
    WHERE a.started_at IS NOT NULL AND a.finished_at IS NOT NULL
)
SELECT run_id, workflow, step, map_index, attempt, kind, status, node_id, host,
       started_at, finished_at, wall_seconds, resources,
       map_from_entries(list_transform(
           map_entries(resources),
           lambda e: {'key': e.key, 'value': CAST(e.value * wall_seconds AS DOUBLE)}
       )) AS resource_seconds
FROM timed
"""

# One row per attempt and resource it held: what GROUP BY resource wants.
RESOURCE_USAGE = """
CREATE VIEW resource_usage AS
SELECT run_id, workflow, step, map_index, attempt, kind, node_id, wall_seconds,
       entry.key AS resource, entry.value AS amount, entry.value * wall_seconds AS seconds
FROM (SELECT *, unnest(map_entries(resources)) AS entry FROM attempt_costs)
"""


def connect(
    store_url: str,
    history: HistoryFilter | None = None,
    *,
    database: str = ":memory:",
    batch: int = DEFAULT_BATCH,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the store's history as `runs`, `tasks`, `attempts`, `logs`.

    Args:
        store_url: the wfray store (`sqlite:///...` or `postgresql+psycopg://...`).
        history: which runs to load (created after/before, workflow); all by default.
        database: DuckDB's own database; a file path lets a large history spill to disk.
        batch: rows per Arrow batch while loading (bounds the memory of the transfer).

    Also defined: `attempt_costs` (per attempt: `wall_seconds`, `resources` held and
    `resource_seconds` per resource, both maps) and `resource_usage` (one row per attempt
    and resource: `resource`, `amount`, `seconds`). Time zone is UTC, so days are UTC days.
    """
    connection = duckdb.connect(database)
    try:
        connection.execute("SET TimeZone = 'UTC'")
        with snapshot(store_url) as history_snapshot:
            for name in TABLES:
                reader = history_snapshot.reader(name, history, batch=batch)
                connection.register("_wfray_loading", reader)
                connection.execute(f"CREATE OR REPLACE TABLE {name} AS FROM _wfray_loading")
                connection.unregister("_wfray_loading")
        connection.execute(ATTEMPT_COSTS)
        connection.execute(RESOURCE_USAGE)
    except BaseException:
        connection.close()
        raise
    return connection
