"""The environment (WFRAY_*) read into the values of Settings, each variable checked.

Errors name the variable and what was expected (DefinitionError), never a secret's value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wfray.api_tokens import parse_api_tokens
from wfray.domain.errors import DefinitionError
from wfray.domain.policy import RetryPolicy
from wfray.domain.queueing import QueueConfig

MAX_DATABASE_URL_BYTES = 4096

NUMBERS: tuple[tuple[str, type[int] | type[float]], ...] = (
    ("blob_threshold_bytes", int),
    ("max_result_bytes", int),
    ("max_map_items", int),
    ("quarantine_after_deaths", int),
    ("cpu_window", int),
    ("io_window", int),
    ("io_concurrency", int),
    ("io_executors", int),
    ("cpu_attempts_per_task", int),
    ("short_step_s", float),
    ("memory_cap", int),
    ("max_backlog", int),
    ("log_limit", int),
    ("api_port", int),
    ("api_max_body_bytes", int),
    ("autoscale_max_cpu_bundles", int),
    ("autoscale_max_io_bundles", int),
    ("max_error_chars", int),
    ("max_traceback_chars", int),
    ("max_log_line_chars", int),
    ("audit_retention_days", int),
    ("api_audit_flush_s", float),
)


def environment_values(
    env: Mapping[str, str], data_dir: str, overrides: dict[str, Any]
) -> dict[str, Any]:
    """Settings' values that `env` sets (WFRAY_*), with `data_dir`'s defaults.

    Explicit `overrides` that need it are made absolute or typed in place (a secret folder
    given relative, tasks given as a list)."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": _database_url(env, data_dir),
        "blob_root": env.get("WFRAY_BLOB_ROOT", f"{data_dir}/blobs"),
        "namespace": env.get("WFRAY_NAMESPACE", "wfray"),
    }
    values.update(_numbers(env))
    values.update(_api_values(env))
    values.update(_integration_values(env, overrides))
    values.update(_io_sync_timeout(env))
    values.update(_api_access_values(env))
    values.update(_data_values(env))
    values.update(_store_values(env))
    return values


def _database_url(env: Mapping[str, str], data_dir: str) -> str:
    """WFRAY_DATABASE_URL, or the first line of the file WFRAY_DATABASE_URL_FILE names (a
    secret the operator mounts, so the password appears in no config file); SQLite in
    data_dir by default. Errors name the file, never its content."""
    if env.get("WFRAY_DATABASE_URL") and env.get("WFRAY_DATABASE_URL_FILE"):
        raise DefinitionError("set WFRAY_DATABASE_URL or WFRAY_DATABASE_URL_FILE, not both")
    if not env.get("WFRAY_DATABASE_URL_FILE"):
        return env.get("WFRAY_DATABASE_URL") or f"sqlite:///{data_dir}/wfray.db"
    path = Path(env["WFRAY_DATABASE_URL_FILE"])
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_DATABASE_URL_BYTES + 1)
    except OSError as exc:
        raise DefinitionError(f"WFRAY_DATABASE_URL_FILE {str(path)!r}: {exc.strerror}") from exc
    lines = raw.decode("utf-8", errors="replace").strip().splitlines()
    url = lines[0].strip() if lines else ""
    if len(raw) > MAX_DATABASE_URL_BYTES or len(lines) > 1 or "\x00" in url:
        raise DefinitionError(
            f"WFRAY_DATABASE_URL_FILE {str(path)!r} must hold one database URL on one line"
        )
    if "://" not in url:
        raise DefinitionError(f"WFRAY_DATABASE_URL_FILE {str(path)!r} holds no database URL")
    return url


def _numbers(env: Mapping[str, str]) -> dict[str, Any]:
    """The numeric settings of NUMBERS that the environment sets (WFRAY_<NAME>)."""
    values: dict[str, Any] = {}
    for name, kind in NUMBERS:
        raw = env.get(f"WFRAY_{name.upper()}")
        if raw is not None:
            try:
                values[name] = kind(raw)
            except ValueError as exc:
                expected = "an integer" if kind is int else "a number"
                raise DefinitionError(
                    f"WFRAY_{name.upper()} must be {expected}, got {raw!r}"
                ) from exc
    return values


def _store_values(env: Mapping[str, str]) -> dict[str, Any]:
    """WFRAY_SQLITE_SYNCHRONOUS, WFRAY_PG_BIN_DIR, WFRAY_QUEUES and WFRAY_DEFAULT_RETRY."""
    values: dict[str, Any] = {}
    if "WFRAY_SQLITE_SYNCHRONOUS" in env:
        values["sqlite_synchronous"] = env["WFRAY_SQLITE_SYNCHRONOUS"]
    if env.get("WFRAY_PG_BIN_DIR"):
        values["pg_bin_dir"] = str(Path(env["WFRAY_PG_BIN_DIR"]).resolve())
    if "WFRAY_QUEUES" in env:
        values["queues"] = parse_queues(env["WFRAY_QUEUES"])
    if "WFRAY_DEFAULT_RETRY" in env:
        try:
            values["default_retry"] = RetryPolicy.model_validate_json(env["WFRAY_DEFAULT_RETRY"])
        except ValueError as exc:
            raise DefinitionError(f"WFRAY_DEFAULT_RETRY is not a retry policy: {exc}") from exc
    return values


def _api_values(env: Mapping[str, str]) -> dict[str, Any]:
    """The HTTP API's text settings: WFRAY_API_HOST, _ROUTE_PREFIX, _TOKEN, WFRAY_MODULES."""
    values: dict[str, Any] = {}
    for name in ("api_host", "api_route_prefix"):
        if f"WFRAY_{name.upper()}" in env:
            values[name] = env[f"WFRAY_{name.upper()}"]
    if "WFRAY_API_TOKEN" in env:
        values["api_token"] = env["WFRAY_API_TOKEN"] or None  # empty: no authentication
    if "WFRAY_MODULES" in env:  # comma-separated: "shop.flows,shop.tasks"
        values["modules"] = tuple(m.strip() for m in env["WFRAY_MODULES"].split(",") if m.strip())
    return values


def _integration_values(env: Mapping[str, str], overrides: dict[str, Any]) -> dict[str, Any]:
    """WFRAY_API_TASKS (comma-separated built-in task names) and WFRAY_SECRET_DIR (made
    absolute, also when given as an override: workers do not share the caller's cwd)."""
    values: dict[str, Any] = {}
    if "WFRAY_API_TASKS" in env:
        values["api_tasks"] = tuple(
            t.strip() for t in env["WFRAY_API_TASKS"].split(",") if t.strip()
        )
    if env.get("WFRAY_SECRET_DIR"):
        values["secret_dir"] = str(Path(env["WFRAY_SECRET_DIR"]).resolve())
    if overrides.get("secret_dir"):
        overrides["secret_dir"] = str(Path(overrides["secret_dir"]).resolve())
    if isinstance(overrides.get("api_tasks"), list):
        overrides["api_tasks"] = tuple(overrides["api_tasks"])
    return values


def _io_sync_timeout(env: Mapping[str, str]) -> dict[str, Any]:
    """WFRAY_IO_SYNC_TIMEOUT_S: seconds, or 0 / "none" for no default timeout."""
    raw = env.get("WFRAY_IO_SYNC_TIMEOUT_S")
    if raw is None:
        return {}
    if raw.strip().lower() in ("", "0", "none"):
        return {"io_sync_timeout_s": None}
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise DefinitionError(
            f"WFRAY_IO_SYNC_TIMEOUT_S must be a number of seconds (0 or none: no default), "
            f"got {raw!r}"
        )
    return {"io_sync_timeout_s": seconds}


def _data_values(env: Mapping[str, str]) -> dict[str, Any]:
    """Where data may live: WFRAY_BLOB_ROOT_SHARED (1/true/yes/on or 0/false/no/off)."""
    values: dict[str, Any] = {}
    raw = env.get("WFRAY_BLOB_ROOT_SHARED")
    if raw is not None:
        flag = raw.strip().lower()
        if flag not in {"1", "true", "yes", "on", "0", "false", "no", "off", ""}:
            raise DefinitionError(f"WFRAY_BLOB_ROOT_SHARED must be true or false, got {raw!r}")
        values["blob_root_shared"] = flag in {"1", "true", "yes", "on"}
    return values


def parse_queues(text: str) -> tuple[QueueConfig, ...]:
    """WFRAY_QUEUES: a JSON list of queue objects, e.g. [{"name": "ninox", "rate_per_s": 5}]."""
    try:
        items = json.loads(text)
        return tuple(QueueConfig(**item) for item in items)
    except (ValueError, TypeError) as exc:
        raise DefinitionError(f"WFRAY_QUEUES is not a JSON list of queues: {exc}") from exc


def _api_access_values(env: Mapping[str, str]) -> dict[str, Any]:
    """WFRAY_API_TOKENS(_FILE), _ALLOWED_HOSTS, _METRICS_PUBLIC and the API's bounds."""
    values: dict[str, Any] = {}
    if env.get("WFRAY_API_TOKENS_FILE"):
        path = Path(env["WFRAY_API_TOKENS_FILE"])
        try:
            text = path.read_text()
        except OSError as exc:
            raise DefinitionError(f"WFRAY_API_TOKENS_FILE {str(path)!r}: {exc}") from exc
        values["api_tokens"] = parse_api_tokens(text, "WFRAY_API_TOKENS_FILE")
    if env.get("WFRAY_API_TOKENS"):
        values["api_tokens"] = parse_api_tokens(env["WFRAY_API_TOKENS"], "WFRAY_API_TOKENS")
    if "WFRAY_API_ALLOWED_HOSTS" in env:  # comma-separated: "wfray.example.com,10.0.0.5"
        hosts = env["WFRAY_API_ALLOWED_HOSTS"].split(",")
        values["api_allowed_hosts"] = tuple(h.strip() for h in hosts if h.strip())
    if "WFRAY_API_METRICS_PUBLIC" in env:
        values["api_metrics_public"] = env["WFRAY_API_METRICS_PUBLIC"].lower() in (
            "1",
            "true",
            "yes",
        )
    for name, kind in (
        ("api_max_streams", int),
        ("api_follow_max_s", float),
    ):
        raw = env.get(f"WFRAY_{name.upper()}")
        if raw is None:
            continue
        try:
            value = kind(raw)
        except ValueError:
            value = 0
        if not value > 0:
            raise DefinitionError(f"WFRAY_{name.upper()} must be a positive number, got {raw!r}")
        values[name] = value
    return values


def check_bounds(values: Mapping[str, Any]) -> None:
    """Refuse settings values out of their range, naming the variable that sets them."""
    if values.get("io_executors", 1) < 1:
        raise DefinitionError(
            f"WFRAY_IO_EXECUTORS must be at least 1, got {values['io_executors']}"
        )
    if values.get("quarantine_after_deaths", 1) < 1:
        raise DefinitionError(
            "WFRAY_QUARANTINE_AFTER_DEATHS must be at least 1 (starts gone down applying one "
            f"outcome), got {values['quarantine_after_deaths']}"
        )
    if values.get("audit_retention_days", 0) < 0:
        raise DefinitionError(
            "WFRAY_AUDIT_RETENTION_DAYS must be 0 (keep forever) or more, got "
            f"{values['audit_retention_days']}"
        )
    if values.get("api_audit_flush_s", 1.0) <= 0:
        raise DefinitionError(
            f"WFRAY_API_AUDIT_FLUSH_S must be positive, got {values['api_audit_flush_s']}"
        )
    if values.get("cpu_attempts_per_task", 1) < 1:
        raise DefinitionError(
            "WFRAY_CPU_ATTEMPTS_PER_TASK must be at least 1 (1: every attempt in a task of "
            f"its own), got {values['cpu_attempts_per_task']}"
        )
