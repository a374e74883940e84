"""The store's history as Parquet files, written batch by batch.

`wfray export --parquet DIR` calls `export_parquet`. Each file is written under a
temporary name and renamed when complete, so a reader never sees half a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from wfray.adapters.sqlalchemy.arrow import DEFAULT_BATCH, SCHEMAS, TABLES, snapshot


def write_parquet(batches: pa.RecordBatchReader, path: Path) -> int:
    """Write every batch of `batches` to `path` atomically; the number of rows written."""
    partial = path.with_name(f".{path.name}.partial")
    rows = 0
    try:
        with pq.ParquetWriter(partial, batches.schema, compression="zstd") as writer:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return rows


def export_parquet(store_url: str, directory: Path) -> dict[str, int]:
    """Write runs, tasks, attempts and logs as `<table>.parquet` files in `directory`.

    All four come from one consistent read of the store. The folder is created if
    missing; existing files of the same names are replaced.

    Returns:
        The number of rows written per table, e.g. {"runs": 120, "tasks": 700, ...}.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create the export folder {str(directory)!r}: {exc}") from exc
    counts: dict[str, int] = {}
    with snapshot(store_url) as history:
        for name in TABLES:
            reader = pa.RecordBatchReader.from_batches(
                SCHEMAS[name], history.batches(name, batch=DEFAULT_BATCH)
            )
            counts[name] = write_parquet(reader, directory / f"{name}.parquet")
    return counts
