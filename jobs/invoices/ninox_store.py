"""The in-memory state behind the local Ninox server: teams, databases, tables, records, files.

It follows the classic v1 API (see `shared/ninox.md` sections 3, 4 and 7): record ids are
integers from 1 per table; every write bumps one database-wide `sequence`, which the written
record keeps; timestamps are UTC `YYYY-MM-DDThh:mm:ss` without a zone; `fields` are keyed by
field name, and empty fields are left out. Tables and fields are addressed by id or by name.
All access goes through one re-entrant lock, so the server thread and a test can share it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jobs.invoices.ninox_faults import FaultInjector
from jobs.invoices.ninox_schema import (
    TIMESTAMP_FORMAT,
    BadRequestError,
    Json,
    NotFoundError,
    TableSpec,
    checked_value,
    equal,
    sort_key,
)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The query parameters of a record list, already parsed."""

    page: int = 0
    per_page: int = 100
    filters: dict[str, Any] | None = None
    order: str | None = None
    desc: bool = False
    newest_first: bool = False
    updated_first: bool = False
    since_id: int | None = None
    since_sq: int | None = None


@dataclass(slots=True)
class StoredFile:
    name: str
    content: bytes
    content_type: str
    field_id: str | None
    modified_at: str

    def to_json(self) -> Json:
        out: Json = {"name": self.name, "size": len(self.content)}
        out.update(contentType=self.content_type, modifiedAt=self.modified_at)
        if self.field_id is not None:
            out["fieldId"] = self.field_id
        return out


@dataclass(slots=True)
class _Record:
    id: int
    sequence: int
    created_at: str
    created_by: str
    modified_at: str
    modified_by: str
    values: dict[str, Any] = field(default_factory=dict)  # keyed by field id
    files: dict[str, StoredFile] = field(default_factory=dict)


@dataclass(slots=True)
class _Table:
    spec: TableSpec
    records: dict[int, _Record] = field(default_factory=dict)
    next_id: int = 1


@dataclass(slots=True)
class _Database:
    id: str
    name: str
    tables: dict[str, _Table] = field(default_factory=dict)  # keyed by table id
    sequence: int = 0

    def table(self, key: str) -> _Table:
        if key in self.tables:
            return self.tables[key]
        for table in self.tables.values():
            if table.spec.name == key:
                return table
        raise NotFoundError(f"database {self.id!r} has no table with id or name {key!r}")


@dataclass(slots=True)
class _Team:
    id: str
    name: str
    databases: dict[str, _Database] = field(default_factory=dict)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class NinoxState:
    """Every team, database and record the local server holds, plus its fault rules."""

    def __init__(
        self,
        clock: Callable[[], datetime] = _utc_now,
        user: str = "api",
        fault_seed: int = 0,
    ) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._user = user
        self._teams: dict[str, _Team] = {}
        self.faults = FaultInjector(fault_seed)

    # --- schema ---------------------------------------------------------------------------

    def add_team(self, team_id: str, name: str) -> None:
        with self._lock:
            self._teams[team_id] = _Team(team_id, name)

    def add_database(self, team_id: str, database_id: str, name: str) -> None:
        with self._lock:
            self._team(team_id).databases[database_id] = _Database(database_id, name)

    def add_table(self, team_id: str, database_id: str, spec: TableSpec) -> None:
        with self._lock:
            self._database(team_id, database_id).tables[spec.id] = _Table(spec)

    def teams(self) -> list[Json]:
        with self._lock:
            return [{"id": t.id, "name": t.name} for t in self._teams.values()]

    def team(self, team_id: str) -> Json:
        with self._lock:
            team = self._team(team_id)
            return {"id": team.id, "name": team.name}

    def databases(self, team_id: str) -> list[Json]:
        with self._lock:
            return [{"id": d.id, "name": d.name} for d in self._team(team_id).databases.values()]

    def database(self, team_id: str, database_id: str) -> Json:
        with self._lock:
            db = self._database(team_id, database_id)
            return {"id": db.id, "name": db.name, "tables": self.tables(team_id, database_id)}

    def tables(self, team_id: str, database_id: str) -> list[Json]:
        with self._lock:
            db = self._database(team_id, database_id)
            return [t.spec.to_json() for t in db.tables.values()]

    def table(self, team_id: str, database_id: str, table: str) -> Json:
        with self._lock:
            return self._database(team_id, database_id).table(table).spec.to_json()

    def sequence(self, team_id: str, database_id: str) -> int:
        with self._lock:
            return self._database(team_id, database_id).sequence

    # --- records --------------------------------------------------------------------------

    def list_records(
        self, team_id: str, database_id: str, table: str, query: ListQuery
    ) -> list[Json]:
        with self._lock:
            tbl = self._database(team_id, database_id).table(table)
            wanted = [(tbl.spec.field(k), v) for k, v in (query.filters or {}).items()]
            rows = [
                r
                for r in tbl.records.values()
                if (query.since_id is None or r.id > query.since_id)
                and (query.since_sq is None or r.sequence > query.since_sq)
                and all(equal(r.values.get(spec.id), value) for spec, value in wanted)
            ]
            rows = _sorted(rows, tbl.spec, query)
            start = query.page * query.per_page
            return [self._render(tbl, r) for r in rows[start : start + query.per_page]]

    def get_record(self, team_id: str, database_id: str, table: str, record_id: int) -> Json:
        with self._lock:
            tbl = self._database(team_id, database_id).table(table)
            return self._render(tbl, _record(tbl, record_id))

    def upsert(
        self, team_id: str, database_id: str, table: str, items: Sequence[Json]
    ) -> list[Json]:
        """Create the items without an id, update the given fields of those with one.

        All items are checked before any is written, so a bad item leaves the table as it was.
        """
        with self._lock:
            db = self._database(team_id, database_id)
            tbl = db.table(table)
            checked = [self._check_item(db, tbl, item) for item in items]
            stamp = self._now()
            written: list[Json] = []
            for record_id, values in checked:
                db.sequence += 1
                if record_id is None:
                    record = _Record(tbl.next_id, db.sequence, stamp, self._user, stamp, self._user)
                    tbl.records[record.id] = record
                    tbl.next_id += 1
                else:
                    record = tbl.records[record_id]
                    record.sequence, record.modified_at = db.sequence, stamp
                    record.modified_by = self._user
                for field_id, value in values.items():
                    if value is None:
                        record.values.pop(field_id, None)
                    else:
                        record.values[field_id] = value
                written.append(self._render(tbl, record))
            return written

    def delete_record(self, team_id: str, database_id: str, table: str, record_id: int) -> None:
        with self._lock:
            db = self._database(team_id, database_id)
            tbl = db.table(table)
            _record(tbl, record_id)
            del tbl.records[record_id]
            db.sequence += 1

    def count(self, team_id: str, database_id: str, table: str) -> int:
        with self._lock:
            return len(self._database(team_id, database_id).table(table).records)

    # --- files ----------------------------------------------------------------------------

    def add_file(
        self,
        ref: tuple[str, str, str, int],
        name: str,
        content: bytes,
        content_type: str,
        field_key: str | None = None,
    ) -> Json:
        """Attach a file to a record; with `field_key`, also set that file field to it."""
        team_id, database_id, table, record_id = ref
        if not name or "/" in name:
            raise BadRequestError(f"file name must be non-empty without '/', got {name!r}")
        with self._lock:
            db = self._database(team_id, database_id)
            tbl = db.table(table)
            record = _record(tbl, record_id)
            spec = tbl.spec.field(field_key) if field_key else None
            if spec is not None and spec.type != "file":
                raise BadRequestError(f"field {spec.name!r} is of type {spec.type}, not file")
            stamp = self._now()
            stored = StoredFile(name, content, content_type, spec.id if spec else None, stamp)
            record.files[name] = stored
            if spec is not None:
                record.values[spec.id] = name
            db.sequence += 1
            record.sequence, record.modified_at, record.modified_by = db.sequence, stamp, self._user
            return stored.to_json()

    def list_files(self, ref: tuple[str, str, str, int]) -> list[Json]:
        with self._lock:
            return [f.to_json() for f in self._record_at(ref).files.values()]

    def get_file(self, ref: tuple[str, str, str, int], name: str) -> StoredFile:
        with self._lock:
            record = self._record_at(ref)
            if name not in record.files:
                raise NotFoundError(f"record {ref[3]} has no file {name!r}")
            return record.files[name]

    def delete_file(self, ref: tuple[str, str, str, int], name: str) -> None:
        with self._lock:
            team_id, database_id, table, record_id = ref
            db = self._database(team_id, database_id)
            record = _record(db.table(table), record_id)
            stored = record.files.pop(name, None)
            if stored is None:
                raise NotFoundError(f"record {record_id} has no file {name!r}")
            if stored.field_id is not None and record.values.get(stored.field_id) == name:
                del record.values[stored.field_id]
            db.sequence += 1
            record.sequence = db.sequence

    # --- helpers --------------------------------------------------------------------------

    def _now(self) -> str:
        return self._clock().astimezone(UTC).strftime(TIMESTAMP_FORMAT)

    def _team(self, team_id: str) -> _Team:
        if team_id not in self._teams:
            raise NotFoundError(f"no team with id {team_id!r}")
        return self._teams[team_id]

    def _database(self, team_id: str, database_id: str) -> _Database:
        team = self._team(team_id)
        if database_id not in team.databases:
            raise NotFoundError(f"team {team_id!r} has no database with id {database_id!r}")
        return team.databases[database_id]

    def _record_at(self, ref: tuple[str, str, str, int]) -> _Record:
        team_id, database_id, table, record_id = ref
        return _record(self._database(team_id, database_id).table(table), record_id)

    def _check_item(self, db: _Database, tbl: _Table, item: Any) -> tuple[int | None, Json]:
        if not isinstance(item, dict):
            raise BadRequestError(f"each record must be a JSON object, got {item!r}")
        unknown = set(item) - {"id", "fields"}
        if unknown:
            raise BadRequestError(f"unexpected record keys {sorted(unknown)}; expected id, fields")
        record_id = item.get("id")
        if record_id is not None:
            if isinstance(record_id, bool) or not isinstance(record_id, int):
                raise BadRequestError(f"record id must be an integer, got {record_id!r}")
            _record(tbl, record_id)
        fields = item.get("fields", {})
        if not isinstance(fields, dict):
            raise BadRequestError(f"'fields' must be an object keyed by field name, got {fields!r}")
        values: Json = {}
        for key, value in fields.items():
            spec = tbl.spec.field(key)
            values[spec.id] = checked_value(tbl.spec, spec, value, _ref_exists(db))
        return record_id, values

    def _render(self, tbl: _Table, record: _Record) -> Json:
        return {
            "id": record.id,
            "sequence": record.sequence,
            "createdAt": record.created_at,
            "createdBy": record.created_by,
            "modifiedAt": record.modified_at,
            "modifiedBy": record.modified_by,
            "fields": {
                spec.name: record.values[spec.id]
                for spec in tbl.spec.fields
                if spec.id in record.values
            },
        }


def _record(tbl: _Table, record_id: int) -> _Record:
    if record_id not in tbl.records:
        raise NotFoundError(f"table {tbl.spec.name!r} ({tbl.spec.id}) has no record {record_id}")
    return tbl.records[record_id]


def _ref_exists(db: _Database) -> Callable[[str, int], bool]:
    return lambda table_id, record_id: record_id in db.tables[table_id].records


def _sorted(rows: Iterable[_Record], spec: TableSpec, query: ListQuery) -> list[_Record]:
    by_id = sorted(rows, key=lambda r: r.id)
    if query.newest_first:
        return by_id[::-1]
    if query.updated_first:
        return sorted(by_id, key=lambda r: r.sequence, reverse=True)
    if query.order is None:
        return by_id
    field_id = spec.field(query.order).id
    return sorted(by_id, key=lambda r: sort_key(r.values.get(field_id)), reverse=query.desc)
