"""Settings, read once from the environment (prefix WFRAY_) and passed down as values.

The reading of each variable lives in config_env.py, the API's tokens in api_tokens.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from wfray.api_tokens import API_SCOPES, ApiToken, parse_api_tokens
from wfray.config_env import check_bounds, environment_values, parse_queues
from wfray.domain.policy import RetryPolicy
from wfray.domain.queueing import QueueConfig

__all__ = [
    "API_SCOPES",
    "ApiToken",
    "Settings",
    "load_settings",
    "mask_url_password",
    "masked_repr",
    "parse_api_tokens",
    "parse_queues",
]


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable. Paths are absolute by the time a Settings exists.

    Attributes:
        data_dir: where the default SQLite store and blobs live (on the head node).
        database_url: SQLAlchemy URL; SQLite in data_dir by default, PostgreSQL for clusters.
        blob_root: folder or pyarrow filesystem URI (s3://...) for large results.
        blob_threshold_bytes: results larger than this go to the blob store.
        max_result_bytes: a step's result larger than this (as JSON) fails its attempt,
            without retry, naming the limit (WFRAY_MAX_RESULT_BYTES); so do the collected
            results of a paged fan-out that is the run's result.
        max_map_items: a list larger than this, mapped over by a later step, fails the step
            that returned it, without retry, naming the limit: past it a fan-out is better
            split into child runs (its rows, its collected results) (WFRAY_MAX_MAP_ITEMS).
        quarantine_after_deaths: an outcome that coordinators went down while applying, at
            this many starts, is quarantined: its attempt fails saying so
            (WFRAY_QUARANTINE_AFTER_DEATHS).
        namespace: the Ray namespace of wfray's named actors.
        cpu_window: cpu attempts dispatched at once (Ray queues them for free CPUs), so the
            next attempt is already waiting in Ray when a CPU frees.
        io_window: io attempts dispatched at once.
        io_concurrency: io attempts running at once in one io executor.
        io_executors: io executor actors, spread over the nodes (on the nodes with `io`
            slots when the cluster has any); each io attempt goes to the least busy one.
        cpu_attempts_per_task: at most this many attempts of short steps in one shared task
            (a Ray task that runs them one after the other), formed when the backlog is
            deep (1: no shared tasks, every attempt in a task of its own).
        short_step_s: a step whose attempts take less than this on average counts as short
            (WFRAY_SHORT_STEP_S, seconds).
        memory_cap: ready tasks held in the coordinator's memory; the rest wait in the store,
            and a wider fan-out is paged: its items are created as room frees.
        max_backlog: queued tasks past which submissions are refused (retry later).
        queues: named queues with their limits.
        default_retry: the retry policy of steps whose workflow and step set none.
        sqlite_synchronous: SQLite's synchronous pragma (FULL: fsync on every commit).
        log_limit: log lines kept per attempt.
        modules: modules to import where runs are submitted by name (the HTTP API).
        api_host: the address the HTTP API listens on.
        api_port: the HTTP API's port.
        api_route_prefix: where the HTTP API is mounted (its routes live under it, in /v1).
        api_token: the bearer token every /v1 route requires (None: no authentication;
            then the API listens on loopback only).
        api_max_body_bytes: request bodies larger than this are refused (413).
        autoscale_max_cpu_bundles: at most this many cpu attempt bundles are requested from
            the Ray autoscaler for the cpu backlog (0: no request).
        autoscale_max_io_bundles: the same for the io pool, in `io` slots (0: no request).
        autoscale_interval_s: how often the backlog is turned into a resource request.

        api_tasks: built-in tasks (http_request, send_email, render_pdf) the HTTP API may
            start by name (WFRAY_API_TASKS, comma-separated; default none: the API starts
            only the workflows of `modules`).
        secret_dir: a folder with one file per secret (the file `NINOX_API_KEY` holds the
            value of `{"secret": "NINOX_API_KEY"}`), read where steps run; it travels to the
            executors with these settings (WFRAY_SECRET_DIR; a worker started with that
            variable in its environment uses it too). Secrets also resolve from the
            workers' environment, as WFRAY_SECRET_<NAME>.

    Read on the workers from their own environment, not from these settings (like
    WFRAY_SMTP_HOST and the rest of the SMTP server): WFRAY_SMTP_ALLOWED_SENDERS and
    WFRAY_SMTP_ALLOWED_RECIPIENTS (comma-separated addresses or domains `send_email` may
    use; default any), WFRAY_SMTP_MAX_RECIPIENTS (default 50).
        io_sync_timeout_s: the timeout of sync io steps that set none (None: no default),
            so a step stuck on a slow server cannot hold an io thread's slot for ever.
        max_error_chars: an attempt's error message is cut past this many characters.
        max_traceback_chars: an attempt's traceback is cut past this many characters.
        max_log_line_chars: a log line is cut past this many characters, saying how much
            (on the worker when captured, and again by the coordinator).
        api_tokens: scoped bearer tokens of the HTTP API, by name (WFRAY_API_TOKENS, JSON
            {name: {"token": ..., "scopes": [...]}}, or WFRAY_API_TOKENS_FILE); `api_token`
            is one more token, named "admin", with every scope.
        api_allowed_hosts: Host header values the API answers (others: 400); empty: the
            loopback names and `api_host` (any host when `api_host` is a wildcard address
            and a token is set).
        api_metrics_public: /metrics, /docs and /openapi.json answer without a token.
        api_max_streams: followed log streams one token may hold at once (then 429).
        api_follow_max_s: a followed log stream ends after this long (the client reconnects
            after its last line id).
        audit_retention_days: audit entries older than this many days are deleted (hourly,
            by the coordinator); 0 keeps them forever.
        api_audit_flush_s: how often the API records its tokens' use (counted per token,
            scope, route and outcome in between).
        blob_root_shared: the operator's word that a folder blob root is a filesystem every
            node mounts (NFS, ...); without it, a folder is refused on a multi-node cluster.
        pg_bin_dir: the folder of the pg_dump and pg_restore that `wfray backup` and
            `wfray restore` use on PostgreSQL (WFRAY_PG_BIN_DIR; default: found on PATH).
            They must be of the server's major version or newer.
    """

    data_dir: str
    database_url: str
    blob_root: str
    blob_threshold_bytes: int = 256 * 1024
    max_result_bytes: int = 1024**3
    max_map_items: int = 10_000_000
    quarantine_after_deaths: int = 3
    namespace: str = "wfray"
    cpu_window: int = 256
    io_window: int = 256
    io_concurrency: int = 64
    io_executors: int = 1
    cpu_attempts_per_task: int = 8
    short_step_s: float = 0.01
    memory_cap: int = 10_000
    max_backlog: int = 1_000_000
    queues: tuple[QueueConfig, ...] = field(default_factory=tuple)
    default_retry: RetryPolicy = field(default_factory=RetryPolicy)
    sqlite_synchronous: str = "FULL"
    log_limit: int = 1000
    modules: tuple[str, ...] = ()
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_route_prefix: str = "/"
    api_token: str | None = field(default=None, repr=False)
    api_max_body_bytes: int = 1024 * 1024
    autoscale_max_cpu_bundles: int = 0
    autoscale_max_io_bundles: int = 0
    autoscale_interval_s: float = 2.0
    # issue 13, integrations: built-ins over HTTP, secrets by name
    api_tasks: tuple[str, ...] = ()
    secret_dir: str | None = None
    io_sync_timeout_s: float | None = 3600.0
    # What an attempt's text may hold once stored (application/storable.py): longer error
    # messages, tracebacks and log lines are cut, saying how much was cut.
    max_error_chars: int = 16_384
    max_traceback_chars: int = 65_536
    max_log_line_chars: int = 8_192
    # -- the HTTP API's access and bounds (security) --
    api_tokens: tuple[ApiToken, ...] = field(default_factory=tuple, repr=False)
    api_allowed_hosts: tuple[str, ...] = ()
    api_metrics_public: bool = False
    api_max_streams: int = 4
    api_follow_max_s: float = 3600.0
    # -- data placement (security issue 13, item 7)
    blob_root_shared: bool = False
    # -- operations: the audit trail (issue 16)
    audit_retention_days: int = 365
    api_audit_flush_s: float = 10.0
    # -- backup and restore: where pg_dump and pg_restore are (None: on PATH)
    pg_bin_dir: str | None = None

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def __repr__(self) -> str:
        return masked_repr(self)


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from the environment (WFRAY_*), then apply explicit overrides."""
    env = os.environ if env is None else env
    data_dir = str(Path(overrides.pop("data_dir", env.get("WFRAY_DATA_DIR", ".wfray"))).resolve())
    values = environment_values(env, data_dir, overrides)
    values.update(overrides)
    if "queues" in values:
        values["queues"] = tuple(
            q if isinstance(q, QueueConfig) else QueueConfig(**q) for q in values["queues"]
        )
    check_bounds(values)
    return Settings(**values)


# -- keeping secrets out of repr -------------------------------------------------------------

_PASSWORD_IN_URL = re.compile(r"^([A-Za-z][\w+.\-]*://[^:/@\s]*:)[^\s]*@")
_SECRET_NAME = re.compile(r"password|passwd|secret|token|api_key|credential", re.IGNORECASE)
MASK = "***"


def mask_url_password(url: str) -> str:
    """`url` with the password of its user info replaced by ***; everything else as is.

    Up to the last `@`, so a password holding an unescaped `@` is masked whole (a query
    holding one may be masked with it: too much hidden, never too little)."""
    return _PASSWORD_IN_URL.sub(rf"\1{MASK}@", url)


def masked_repr(obj: Any) -> str:
    """The repr of a settings dataclass without its secrets: fields declared `repr=False`
    are left out, fields named like a secret (password, token, ...) show *** when set,
    and passwords inside URL-valued fields are masked."""
    parts = []
    for f in fields(obj):
        if not f.repr:
            continue
        value = getattr(obj, f.name)
        if value is not None and _SECRET_NAME.search(f.name):
            shown = MASK
        elif isinstance(value, str):
            shown = repr(mask_url_password(value))
        else:
            shown = repr(value)
        parts.append(f"{f.name}={shown}")
    return f"{type(obj).__name__}({', '.join(parts)})"
