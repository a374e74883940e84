"""The schema model of the local Ninox server: tables, fields, value checks, filters, sort order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S"
FIELD_TYPES = frozenset(
    {"string", "email", "number", "date", "timestamp", "choice", "boolean", "ref", "file"}
)

Json = dict[str, Any]


class NinoxStoreError(Exception):
    """A request the store refuses; `status` is the HTTP status the server answers."""

    status = 400


class BadRequestError(NinoxStoreError):
    """The request is malformed or names something that does not fit the schema."""

    status = 400


class NotFoundError(NinoxStoreError):
    """A team, database, table, record or file that does not exist."""

    status = 404


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a table; `ref_table` is the table id a `ref` field points to."""

    id: str
    name: str
    type: str
    choices: tuple[str, ...] = ()
    ref_table: str | None = None

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"field {self.name!r}: type must be one of {sorted(FIELD_TYPES)}")

    def to_json(self) -> Json:
        out: Json = {"id": self.id, "name": self.name, "type": self.type}
        if self.choices:
            out["choices"] = [{"id": str(i + 1), "caption": c} for i, c in enumerate(self.choices)]
        if self.ref_table:
            out["refTableId"] = self.ref_table
        return out


@dataclass(frozen=True, slots=True)
class TableSpec:
    id: str
    name: str
    fields: tuple[FieldSpec, ...]

    def field(self, key: str) -> FieldSpec:
        """The field named `key`, or with id `key` (names win, as they are what clients use)."""
        for spec in self.fields:
            if spec.name == key:
                return spec
        for spec in self.fields:
            if spec.id == key:
                return spec
        known = ", ".join(f"{f.id}={f.name!r}" for f in self.fields)
        raise BadRequestError(f"table {self.name!r} has no field {key!r}; known fields: {known}")

    def to_json(self) -> Json:
        return {"id": self.id, "name": self.name, "fields": [f.to_json() for f in self.fields]}


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def checked_value(
    table: TableSpec, spec: FieldSpec, value: Any, ref_exists: Callable[[str, int], bool]
) -> Any:
    """`value` if it fits the field's type (None clears the field); else BadRequestError."""
    if value is None:
        return None
    where = f"field {spec.name!r} of table {table.name!r}"
    if spec.type == "number":
        ok = is_number(value)
    elif spec.type == "boolean":
        ok = isinstance(value, bool)
    elif spec.type == "ref":
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and spec.ref_table is not None and not ref_exists(spec.ref_table, value):
            raise BadRequestError(f"{where}: no record {value} in table {spec.ref_table}")
    elif spec.type == "choice":
        if value not in spec.choices:
            raise BadRequestError(f"{where}: {value!r} is not one of {list(spec.choices)}")
        ok = True
    else:
        ok = isinstance(value, str) and _parses(spec.type, value)
    if not ok:
        raise BadRequestError(f"{where} (type {spec.type}): invalid value {value!r}")
    return value


def _parses(field_type: str, text: str) -> bool:
    try:
        if field_type == "date":
            date.fromisoformat(text)
        elif field_type == "timestamp":
            datetime.strptime(text, TIMESTAMP_FORMAT)
    except ValueError:
        return False
    return True


def equal(stored: Any, wanted: Any) -> bool:
    if is_number(stored) and is_number(wanted):
        return bool(stored == wanted)
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return stored is wanted
    if stored is None or wanted is None:
        return stored is None and wanted is None
    # Ninox query strings carry numbers as text, so "5" finds 5.
    return str(stored) == str(wanted)


def sort_key(value: Any) -> tuple[bool, int, Any]:
    if value is None:
        return (True, 0, 0)
    return (False, 0, value) if is_number(value) else (False, 1, str(value))
