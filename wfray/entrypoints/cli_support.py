"""What every `wfray` command shares: exit codes, errors, JSON output, argument parsing."""

from __future__ import annotations

import dataclasses
import getpass
import importlib
import json
import os
import re
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel
from rich.console import Console

from wfray.application.queries import Queries
from wfray.bootstrap import build_store
from wfray.config import Settings
from wfray.domain.audit import Origin
from wfray.domain.errors import (
    CoordinatorUnavailableError,
    DefinitionError,
    InputValidationError,
    RunNotFoundError,
    ScheduleNotFoundError,
    SchemaOutdatedError,
    StoreUnavailableError,
    UniqueKeyError,
    UnknownWorkflowError,
    VersionMismatchError,
    WfrayError,
)
from wfray.domain.masking import mask_data
from wfray.sdk.definition import Workflow


class Exit(IntEnum):
    """The exit codes scripts can rely on (listed in `wfray --help`)."""

    OK = 0
    RUN_FAILED = 1  # the run failed or was cancelled (submit --wait, watch), or a command failed
    USAGE = 2  # bad arguments or input
    NOT_FOUND = 3  # no such run or workflow
    UNREACHABLE = 4  # wfray (Ray, the coordinator or the store) cannot be reached


@dataclass
class CliContext:
    """What a command works with; the store opens on first use (read commands need no Ray)."""

    settings: Settings
    console: Console
    _queries: Queries | None = None

    @property
    def queries(self) -> Queries:
        if self._queries is None:
            self._queries = Queries(build_store(self.settings))
        return self._queries

    def close(self) -> None:
        if self._queries is not None:
            self._queries.store.close()


def cli_origin() -> Origin:
    """Who the CLI's actions are recorded as in the audit trail: the OS user, on this host."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (a container without passwd entry)
        user = "cli"
    return Origin(user or "cli", "cli", socket.gethostname())


class CliError(Exception):
    """An error the CLI reports in one line, with the exit code it maps to."""

    def __init__(self, message: str, code: Exit) -> None:
        super().__init__(message)
        self.code = code


def exit_code_of(error: WfrayError) -> Exit:
    if isinstance(error, RunNotFoundError | UnknownWorkflowError | ScheduleNotFoundError):
        return Exit.NOT_FOUND
    if isinstance(error, InputValidationError | DefinitionError | UniqueKeyError):
        return Exit.USAGE
    unreachable = (
        CoordinatorUnavailableError
        | StoreUnavailableError
        | SchemaOutdatedError
        | VersionMismatchError
    )
    if isinstance(error, unreachable):
        return Exit.UNREACHABLE
    return Exit.RUN_FAILED


def plain(value: Any) -> Any:
    """A value as JSON-ready data: dataclasses and pydantic models become dicts."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def print_json(value: Any) -> None:
    """What read commands print with --json: credentials masked (domain/masking.py)."""
    print(json.dumps(mask_data(plain(value)), default=str))


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, option: str) -> timedelta:
    """'90s', '30m', '2h', '30d', '1w' as a timedelta."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise CliError(
            f"{option}: expected a duration such as 90s, 30m, 2h, 30d or 1w, got {text!r}",
            Exit.USAGE,
        )
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_time(text: str | None, option: str, now: datetime) -> datetime | None:
    """An ISO timestamp (UTC when it names no zone) or a duration back from `now` ('2h')."""
    if text is None:
        return None
    if _DURATION.match(text.strip()):
        return now - parse_duration(text, option)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(
            f"{option}: expected an ISO time (2024-05-01T12:00) or a duration back from now "
            f"(30m, 2h, 7d), got {text!r}",
            Exit.USAGE,
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# A run's input is stored with the run and sent with each of its dispatches: a larger one
# belongs in the blob store or an external system, referenced from the input.
MAX_JSON_ARGUMENT_BYTES = 16 * 1024 * 1024


def parse_json_argument(text: str, option: str, max_bytes: int = MAX_JSON_ARGUMENT_BYTES) -> Any:
    """Inline JSON, or `@path` for JSON read from a file (`@-` for standard input), of at
    most `max_bytes` (UTF-8): a larger or undecodable one is refused before it is parsed."""
    where = "inline"
    raw = text.encode("utf-8", "surrogateescape")
    if text.startswith("@"):
        where = text[1:]
        raw = _read_bounded(where, option, max_bytes)
    if len(raw) > max_bytes:
        raise CliError(
            f"{option}: larger than {max_bytes} bytes ({where}); pass a reference to the data "
            "(a path, a URL, a blob) instead",
            Exit.USAGE,
        )
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CliError(
            f"{option}: not UTF-8 text ({where}): byte {exc.start} cannot be decoded", Exit.USAGE
        ) from None
    except json.JSONDecodeError as exc:
        raise CliError(
            f"{option}: not valid JSON ({where}): {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}",
            Exit.USAGE,
        ) from None


def _read_bounded(where: str, option: str, max_bytes: int) -> bytes:
    """At most one byte more than `max_bytes` of a file or of standard input ("-")."""
    try:
        if where == "-":
            return sys.stdin.buffer.read(max_bytes + 1)
        with Path(where).open("rb") as source:
            return source.read(max_bytes + 1)
    except OSError as exc:
        raise CliError(f"{option}: cannot read {where!r}: {exc.strerror}", Exit.USAGE) from None


def load_workflows(modules: Iterable[str]) -> list[Workflow]:
    """Import the user's workflow modules and collect the workflows and tasks they declare.

    The current directory goes on the path first, as with `python -m`, so a project's own
    packages import without being installed.
    """
    found: dict[int, Workflow] = {}
    for name in modules:
        module = import_module_of_workflows(name)
        for value in vars(module).values():
            flow = value if isinstance(value, Workflow) else getattr(value, "__wfray_workflow__", 0)
            if isinstance(flow, Workflow):
                found[id(flow)] = flow
    return list(found.values())


def import_module_of_workflows(name: str) -> ModuleType:
    """A user's module, imported from the current directory too (as `python -m` does); any
    failure of its import (missing, a syntax error, an exception it raises) in one line."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise CliError(
            f"cannot import workflow module {name!r}: {type(exc).__name__}: {exc}", Exit.USAGE
        ) from None


def short_duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    seconds = (end - start).total_seconds()
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"
