"""What both sides of InMemoryRunStore share: the tables, as dicts, behind one lock."""

from __future__ import annotations

import threading

from wfray.application.quarantine import QuarantinedOutcome
from wfray.domain.claims import ClaimRecord
from wfray.domain.records import AttemptKey, AttemptRecord, LogRecord, RunRecord, TaskRecord
from wfray.domain.workflow import WorkflowSchema


class InMemoryStoreBase:
    """The stored rows by key, with the indexes the SQL schema keeps (idempotency keys,
    log line keys, workflow save order)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._claims: dict[str, ClaimRecord] = {}
        self._workflows: dict[tuple[str, str], WorkflowSchema] = {}
        self._workflow_order: list[tuple[str, str]] = []
        self._envs: dict[str, str] = {}
        self._subscriptions: dict[tuple[str, str], str] = {}  # (workflow, event) -> env hash
        self._runs: dict[str, RunRecord] = {}
        self._keys: dict[str, str] = {}
        self._tasks: dict[tuple[str, str, int], TaskRecord] = {}
        self._attempts: dict[tuple[str, str, int, int], AttemptRecord] = {}
        self._logs: list[LogRecord] = []
        self._log_keys: set[tuple[object, ...]] = set()
        self._aside: dict[AttemptKey, QuarantinedOutcome] = {}
        self._aside_epochs: dict[AttemptKey, int] = {}
        self._aside_deaths: dict[AttemptKey, int] = {}
        self._next_log_id = 1
