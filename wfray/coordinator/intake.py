"""Intake: submissions wait here for the next loop turn, deduplicated and bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from wfray.application.batch import Batch
from wfray.application.messages import SubmitRequest, SubmitResult
from wfray.application.ports import RunLedger
from wfray.application.storable import problem
from wfray.coordinator.durable import DurableStore
from wfray.coordinator.loading import RunLoader
from wfray.coordinator.settings import CoordinatorSettings
from wfray.coordinator.state import CoordinatorState
from wfray.coordinator.unique_runs import UniqueHolders, UniqueRef, unique_ref
from wfray.domain import engine
from wfray.domain.code_env import check_env_hash
from wfray.domain.errors import (
    BacklogFullError,
    IdempotencyConflictError,
    InputValidationError,
    InvalidRunIdError,
    WfrayError,
)
from wfray.domain.idempotency import check_claim, request_hash
from wfray.domain.ids import MAX_RUN_ID, check_run_id
from wfray.domain.limits import key_problem
from wfray.domain.records import RunRecord
from wfray.domain.status import RunStatus
from wfray.domain.workflow import WorkflowSchema

Pending = tuple[SubmitRequest, "asyncio.Future[SubmitResult]"]
Answer = tuple["asyncio.Future[SubmitResult]", SubmitResult]


@dataclass(eq=False)
class Intake:
    state: CoordinatorState
    durable: DurableStore
    loader: RunLoader
    settings: CoordinatorSettings
    wake: asyncio.Event
    pending: list[Pending] = field(default_factory=list, init=False)

    async def submit(self, requests: Sequence[SubmitRequest]) -> list[SubmitResult]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[SubmitResult]] = []
        for request in requests:
            future: asyncio.Future[SubmitResult] = loop.create_future()
            futures.append(future)
            self.pending.append((request, future))
        self.wake.set()
        return list(await asyncio.gather(*futures))

    async def take(self, batch: Batch, now: datetime, touched: set[str]) -> list[Answer]:
        """Turn pending submissions into new runs in the batch; answers wait for the commit."""
        if not self.pending:
            return []
        taken, self.pending = self.pending, []
        answers: list[Answer] = []
        pending: list[Pending] = []
        for request, future in taken:  # refused before any lookup: they may not be queried
            refused = _refused(request)
            if refused is None:
                pending.append((request, future))
            else:
                refusal = SubmitResult(request.run_id, False, refused, InputValidationError.code)
                answers.append((future, refusal))
        run_ids = [r.run_id for r, _ in pending if not r.fresh_id]
        keys = [r.idempotency_key for r, _ in pending if r.idempotency_key is not None]
        refs = [ref for r, _ in pending if (ref := unique_ref(r)) is not None]
        existing: dict[str, RunRecord] = {}
        known_keys: dict[str, str] = {}
        stored: dict[UniqueRef, RunRecord] = {}
        if run_ids or keys or refs:  # a fresh id needs no lookup: a trip to the store saved
            existing, known_keys, stored = await self.durable.call(
                _lookup, self.durable.store, run_ids, keys, refs
            )
        live = (state.run for state in self.state.runs.values()) if refs else ()
        unique = UniqueHolders(refs, stored, live)
        for request, future in pending:
            answers.append(
                (
                    future,
                    await self._take_one(
                        request, existing, known_keys, unique, batch, now, touched
                    ),
                )
            )
        return answers

    async def _take_one(
        self,
        request: SubmitRequest,
        existing: dict[str, RunRecord],
        known_keys: dict[str, str],
        unique: UniqueHolders,
        batch: Batch,
        now: datetime,
        touched: set[str],
    ) -> SubmitResult:
        run_id = request.run_id
        try:
            check_run_id(run_id)  # it names the run's blob folder: never a path
        except InvalidRunIdError as exc:
            return SubmitResult(str(run_id)[:MAX_RUN_ID], False, exc.message, exc.code)
        if run_id in existing or run_id in batch.new_runs or run_id in self.state.runs:
            return SubmitResult(run_id, created=False)
        fingerprint = _fingerprint(request)
        known = _known_key(request, fingerprint, existing, known_keys)
        if known is not None:
            return known
        try:
            schema = await self.loader.schema(request.workflow, request.version or None)
            env_hash = await self._env_of(request)
        except WfrayError as exc:
            return SubmitResult(request.run_id, False, exc.message, exc.code)
        decided = unique.answer(request, schema)  # an existing run, or a refusal
        if decided is not None:
            return decided
        backlog = self.settings.max_backlog
        if self.state.queued_count >= backlog:
            error = BacklogFullError(
                f"the backlog holds {self.state.queued_count} queued tasks (limit {backlog}): "
                "retry later"
            )
            return SubmitResult(request.run_id, False, error.message, error.code, 1.0)
        run = _new_run(request, schema, fingerprint, now)
        run.env_hash = env_hash
        deadline_s = request.deadline_s or schema.deadline_s
        if deadline_s is not None:
            run.deadline_at = now + timedelta(seconds=deadline_s)
            self.state.timers.deadline_at(run.deadline_at, run.run_id)
        state = self.state.adopt(run, [], schema)
        batch.insert_run(run)
        self.state.record(state, engine.start_run(state, now), batch)
        touched.add(run.run_id)
        if request.idempotency_key is not None:
            known_keys[request.idempotency_key] = run.run_id
        existing[run.run_id] = run
        unique.started(run)
        return SubmitResult(run.run_id, created=True)

    async def _env_of(self, request: SubmitRequest) -> str | None:
        """The runtime env the run records: its parent's for a child (whatever the worker
        that asked sent), else the one the request names, which must be stored already."""
        if request.trigger == "parent" and request.parent_run_id is not None:
            parent = self.state.runs.get(request.parent_run_id)
            if parent is None:
                found = await self.durable.call(
                    self.durable.store.find_runs, [request.parent_run_id]
                )
                held = found.get(request.parent_run_id)
                env_hash = held.env_hash if held is not None else None
            else:
                env_hash = parent.run.env_hash
            await self.loader.load_envs([env_hash])
            return env_hash
        env_hash = check_env_hash(request.env_hash)
        if env_hash is not None and await self.loader.load_envs([env_hash]):
            raise InputValidationError(
                f"unknown runtime env {env_hash[:12]}: record it (RecordEnv) before submitting"
            )
        return env_hash

    def answer(self, answers: list[Answer]) -> None:
        for future, result in answers:
            if not future.done():
                future.set_result(result)


def _fingerprint(request: SubmitRequest) -> str | None:
    """What an idempotency key stands for: a later request with the key must match it."""
    if request.idempotency_key is None:
        return None
    return request_hash(
        request.workflow,
        request.input_json,
        request.queue,
        request.priority,
        request.concurrency_key,
    )


def _known_key(
    request: SubmitRequest,
    fingerprint: str | None,
    existing: dict[str, RunRecord],
    known_keys: dict[str, str],
) -> SubmitResult | None:
    """The answer to a request whose idempotency key is taken: the run holding it, or a
    conflict when the key was used for another workflow or another request."""
    key = request.idempotency_key
    if key is None or fingerprint is None or key not in known_keys:
        return None
    holder = existing.get(known_keys[key])
    if holder is not None:
        try:
            check_claim(key, holder, request.workflow, fingerprint)
        except IdempotencyConflictError as exc:
            return SubmitResult(request.run_id, False, exc.message, exc.code)
    return SubmitResult(known_keys[key], created=False)


def _new_run(
    request: SubmitRequest, schema: WorkflowSchema, fingerprint: str | None, now: datetime
) -> RunRecord:
    return RunRecord(
        run_id=request.run_id,
        workflow=schema.name,
        version=schema.version,
        status=RunStatus.QUEUED,
        input_json=request.input_json,
        created_at=now,
        queue=request.queue,
        priority=request.priority,
        idempotency_key=request.idempotency_key,
        concurrency_key=request.concurrency_key,
        parent_run_id=request.parent_run_id,
        trigger=request.trigger,
        trigger_id=request.trigger_id,
        retry_json=request.retry_json,
        request_hash=fingerprint,
        unique_key=request.unique_key,
    )


def _lookup(
    store: RunLedger, run_ids: list[str], keys: list[str], refs: list[UniqueRef]
) -> tuple[dict[str, RunRecord], dict[str, str], dict[UniqueRef, RunRecord]]:
    """The dedupe lookups in one trip to the store's thread: runs by id, then the runs that
    hold the idempotency keys (their workflow and request hash decide whether a key is
    reused), and the runs holding the uniqueness keys."""
    found = store.find_runs(run_ids) if run_ids else {}
    known_keys = store.find_idempotency_keys(keys) if keys else {}
    holders = [rid for rid in known_keys.values() if rid not in found]
    if holders:
        found.update(store.find_runs(holders))
    return found, known_keys, store.find_unique_runs(refs) if refs else {}


def _refused(request: SubmitRequest) -> str | None:
    """Why this request cannot become a stored run (names and keys, its input's text)."""
    keys = ("run_id", "queue", "idempotency_key", "concurrency_key", "trigger_id", "unique_key")
    for key in keys:
        why = key_problem(key, getattr(request, key))
        if why is not None:
            return why
    why = problem(request.input_json)
    return None if why is None else f"the run input cannot be stored: {why}"
