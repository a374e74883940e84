"""What retention needs from the store: eligible runs, their rows, and their deletion.

Retention never touches the tables itself; a store implements these ports
(`wfray.adapters.sqlalchemy.retention.SqlRetentionStore` for SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

import pyarrow as pa


class RetentionBatch(Protocol):
    """One short write transaction of retention; it commits when its block ends cleanly."""

    def eligible_runs(self, cutoff: datetime, limit: int) -> list[str]:
        """Up to `limit` finished runs that finished before `cutoff`, oldest first.

        A run is not eligible while it, its parent or any of its children is still active.
        The chosen runs stay locked until the transaction ends (where the store can lock).
        """
        ...

    def rows(self, table: str, run_ids: Sequence[str]) -> pa.RecordBatchReader:
        """The rows of `table` (runs, tasks, attempts or logs) that belong to `run_ids`."""
        ...

    def delete_runs(self, run_ids: Sequence[str]) -> dict[str, int]:
        """Delete `run_ids` with their tasks, attempts, logs, claims and quarantined
        outcomes; rows per table."""
        ...


class RetentionStore(Protocol):
    """A store that retention can prune, one `RetentionBatch` transaction at a time."""

    def transaction(self) -> AbstractContextManager[RetentionBatch]:
        """A write transaction; rolled back if its block raises."""
        ...

    def envs_in_use(self, recorded_since: datetime) -> list[str]:
        """The JSON of every runtime env that a run still in the store, a schedule or an
        event subscription refers to, or that was recorded at or after `recorded_since`."""
        ...
