"""The error registry: every error wfray defines lives in wfray/domain/errors.py, with a
unique, documented code, and an HTTP status from the HTTP entrypoint's table.

The codes and statuses are what clients of the HTTP API match on, so `PUBLISHED` pins them:
changing one, or adding an error, is a deliberate edit of this test.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from collections.abc import Iterator
from types import ModuleType

import pytest

import wfray
from wfray.domain import errors
from wfray.domain.errors import (
    BacklogFullError,
    CoordinatorUnavailableError,
    DefinitionError,
    InputValidationError,
    RunNotFoundError,
    SchemaOutdatedError,
    StoreUnavailableError,
    TooManyStreamsError,
    UniqueKeyError,
    UnknownWorkflowError,
    WfrayError,
    WorkflowNotStartableError,
)
from wfray.entrypoints.cli_support import Exit, exit_code_of
from wfray.entrypoints.http.checks import wfray_error_response
from wfray.entrypoints.http.errors import HTTP_STATUS, http_status_of

# code -> HTTP status, as the API answered before the statuses moved out of the domain
PUBLISHED = {
    "active_runs": 409,
    "backlog_full": 429,
    "bad_event": 400,
    "backup_failed": 500,
    "blob_root_not_shared": 500,
    "blob_write_failed": 500,
    "child_runs_failed": 500,
    "claim_not_held": 409,
    "coordinator_unavailable": 503,
    "cycle": 400,
    "email_refused": 500,
    "http_destination_refused": 500,
    "idempotency_conflict": 409,
    "invalid_blob_key": 400,
    "invalid_claim": 400,
    "invalid_definition": 400,
    "invalid_input": 422,
    "invalid_run_id": 400,
    "invalid_transition": 409,
    "invalid_unique_key": 400,
    "non_retryable": 500,
    "result_not_serializable": 500,
    "result_not_storable": 500,
    "result_too_large": 500,
    "result_unreadable": 500,
    "retry_later": 500,
    "run_failed": 500,
    "run_not_found": 404,
    "schedule_not_found": 404,
    "schema_outdated": 503,
    "secret_not_found": 500,
    "stale_write": 409,
    "step_error": 500,
    "step_import_error": 500,
    "store_rejected": 422,
    "store_unavailable": 503,
    "too_many_streams": 429,
    "unique_run_exists": 409,
    "unknown_workflow": 404,
    "version_mismatch": 503,
    "wait_timeout": 504,
    "wfray_error": 500,
    "workflow_not_startable": 403,
}

# The modules errors lived in before they moved; users import them from there.
FORMER_PUBLIC_HOMES = {
    "wfray.domain.schedule": "ScheduleNotFoundError",
    "wfray.sdk.secrets": "SecretNotFoundError",
    "wfray.integrations.http_guard": "DestinationRefusedError",
    "wfray.integrations.email": "EmailRefusedError",
}

_TREE_ROW = re.compile(r"^ {4}(?P<branch>[ |]*(?:\+-- )?)(?P<name>[A-Z]\w+) +(?P<code>[a-z_]+)$")


def _modules() -> Iterator[ModuleType]:
    def unimportable(name: str) -> None:
        raise ImportError(f"cannot import {name}")

    yield wfray
    for info in pkgutil.walk_packages(wfray.__path__, "wfray.", onerror=unimportable):
        yield importlib.import_module(info.name)


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _wfray_errors() -> list[type[WfrayError]]:
    """Every WfrayError subclass wfray defines: those at module level in any of its modules,
    and any other (in a function, a class body) once its module is imported."""
    found: set[type[WfrayError]] = {WfrayError}
    for module in _modules():
        found.update(
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, WfrayError)
            and value.__module__ == module.__name__
        )
    found.update(c for c in _subclasses(WfrayError) if c.__module__.split(".")[0] == "wfray")
    return sorted(found, key=lambda c: c.__qualname__)


WFRAY_ERRORS = _wfray_errors()


def test_the_walk_finds_errors_beyond_the_errors_module_imports() -> None:
    # guards the walk itself: errors raised only around steps and over HTTP are found too
    names = {c.__qualname__ for c in WFRAY_ERRORS}
    assert {"StepImportError", "WorkflowNotStartableError", "ScheduleNotFoundError"} <= names


@pytest.mark.parametrize("error", WFRAY_ERRORS, ids=lambda c: c.__qualname__)
def test_every_error_is_defined_in_the_errors_module(error: type[WfrayError]) -> None:
    assert f"{error.__module__}.{error.__qualname__}" == f"wfray.domain.errors.{error.__name__}"
    assert getattr(errors, error.__name__) is error


@pytest.mark.parametrize("error", WFRAY_ERRORS, ids=lambda c: c.__qualname__)
def test_every_error_declares_its_own_code(error: type[WfrayError]) -> None:
    code = error.__dict__.get("code")  # inherited, it would be its base's code
    assert isinstance(code, str) and re.fullmatch(r"[a-z][a-z0-9_]*", code), error


def test_codes_are_unique() -> None:
    by_code: dict[str, list[str]] = {}
    for error in WFRAY_ERRORS:
        by_code.setdefault(error.code, []).append(error.__name__)
    assert {code: names for code, names in by_code.items() if len(names) > 1} == {}


def test_codes_and_statuses_are_the_published_ones() -> None:
    assert {e.code: http_status_of(e) for e in WFRAY_ERRORS} == PUBLISHED


def test_the_module_docstring_draws_every_error_with_its_code_under_its_base() -> None:
    rows = [m for line in (errors.__doc__ or "").splitlines() if (m := _TREE_ROW.match(line))]
    drawn = {m["name"]: m["code"] for m in rows}
    assert drawn == {e.__name__: e.code for e in WFRAY_ERRORS}
    parents: list[tuple[int, str]] = []  # (column of the name, name) of the open branches
    for row in rows:
        column = row.start("name")
        parents = [(c, n) for c, n in parents if c < column]
        error = getattr(errors, row["name"])
        expected = parents[-1][1] if parents else "Exception"
        assert error.__bases__[0].__name__ == expected, row.string
        parents.append((column, row["name"]))


@pytest.mark.parametrize("error", WFRAY_ERRORS, ids=lambda c: c.__qualname__)
def test_every_error_has_a_status_in_the_entrypoints_table(error: type[WfrayError]) -> None:
    if error is WfrayError:
        assert WfrayError not in HTTP_STATUS  # the base is what no entry names: a 500
        return
    assert any(cls in HTTP_STATUS for cls in error.__mro__), f"{error.__name__}: no entry"


def test_the_table_names_only_wfray_errors_with_error_statuses() -> None:
    for cls, status in HTTP_STATUS.items():
        assert cls in WFRAY_ERRORS, cls
        assert 400 <= status <= 599, (cls, status)


def test_a_subclass_answers_as_its_nearest_base_in_the_table() -> None:
    class Wrapper(Exception):
        """Stands for Ray's RayTaskError, which subclasses the error it wraps."""

    wrapped = type("Wrapper(RunNotFoundError)", (Wrapper, RunNotFoundError), {})
    assert http_status_of(wrapped) == 404
    assert http_status_of(WorkflowNotStartableError) == 403  # its own entry, not its base's
    assert http_status_of(UnknownWorkflowError) == 404
    assert http_status_of(ValueError) == 500


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (BacklogFullError("full", retry_after_s=2.2), 429, "3"),
        (TooManyStreamsError(), 429, "5"),
        (RunNotFoundError("no run with id 'r-1'"), 404, None),
    ],
)
def test_the_response_carries_the_code_the_tables_status_and_retry_after(
    error: WfrayError, status: int, retry_after: str | None
) -> None:
    response = wfray_error_response(None, error)  # type: ignore[arg-type]
    assert response.status_code == status
    assert response.headers.get("retry-after") == retry_after
    body = json.loads(bytes(response.body))
    assert body == {"error": {"code": error.code, "message": error.message}}


def _exit_code_by_former_rule(error: WfrayError) -> Exit:
    """The CLI's rule when errors carried their HTTP status."""
    status = http_status_of(type(error))
    if isinstance(error, RunNotFoundError | UnknownWorkflowError) or status == 404:
        return Exit.NOT_FOUND
    if isinstance(error, InputValidationError | DefinitionError | UniqueKeyError):
        return Exit.USAGE
    if isinstance(error, StoreUnavailableError | SchemaOutdatedError) or status == 503:
        return Exit.UNREACHABLE
    return Exit.RUN_FAILED


@pytest.mark.parametrize("error", WFRAY_ERRORS, ids=lambda c: c.__qualname__)
def test_cli_exit_codes_are_unchanged(error: type[WfrayError]) -> None:
    assert exit_code_of(error()) == _exit_code_by_former_rule(error())


def test_cli_exit_codes_of_the_errors_named_by_status_before() -> None:
    assert exit_code_of(CoordinatorUnavailableError()) is Exit.UNREACHABLE
    assert exit_code_of(errors.ScheduleNotFoundError()) is Exit.NOT_FOUND


@pytest.mark.parametrize(("module", "name"), sorted(FORMER_PUBLIC_HOMES.items()))
def test_former_public_homes_still_export_the_error(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)
