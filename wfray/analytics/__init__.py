"""Analytics over the store's history: Arrow readers, DuckDB, Parquet export, retention.

Reads go through Arrow (DuckDB's sqlite and postgres extensions need internet at run time).
Usage::

    from wfray.analytics import connect

    db = connect("sqlite:////srv/wfray/wfray.db")
    db.sql("SELECT workflow, count(*) FROM runs GROUP BY ALL").show()
"""

from __future__ import annotations

from wfray.adapters.sqlalchemy.arrow import (
    SCHEMAS,
    TABLES,
    HistoryFilter,
    HistorySnapshot,
    read_table,
    record_batches,
    snapshot,
)
from wfray.analytics.duck import connect
from wfray.analytics.export import export_parquet
from wfray.analytics.history import HistorySummary, generate_history
from wfray.analytics.retention import RetentionReport, apply_retention

__all__ = [
    "SCHEMAS",
    "TABLES",
    "HistoryFilter",
    "HistorySnapshot",
    "HistorySummary",
    "RetentionReport",
    "apply_retention",
    "connect",
    "export_parquet",
    "generate_history",
    "read_table",
    "record_batches",
    "snapshot",
]
