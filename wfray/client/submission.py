"""What the client sends to start runs, and how it reads the coordinator's refusals."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from wfray.application.messages import SubmitRequest, SubmitResult
from wfray.domain.errors import (
    BacklogFullError,
    IdempotencyConflictError,
    InputValidationError,
    InvalidRunIdError,
    UniqueKeyError,
    UniqueRunError,
    UnknownWorkflowError,
    WfrayError,
)
from wfray.domain.ids import check_run_id, new_run_id
from wfray.domain.policy import RetryPolicy
from wfray.sdk.definition import Workflow, encode_input

ERRORS_BY_CODE = {
    cls.code: cls
    for cls in (
        BacklogFullError,
        IdempotencyConflictError,
        UnknownWorkflowError,
        InvalidRunIdError,
        UniqueRunError,
        UniqueKeyError,
        InputValidationError,
    )
}


@dataclass(frozen=True, slots=True)
class SubmitOptions:
    """What every run of one submission shares: the client's keyword arguments in one value.

    Attributes:
        priority, queue: where the runs wait for a slot, and in which order.
        retry: overrides the retry policy of every step of the runs.
        deadline_s: overrides the workflow's deadline.
        parent_run_id, trigger, trigger_id: who started the runs ("client", "parent", ...).
        env_hash: the recorded runtime environment the runs' steps run in (None: the
            cluster's own); the client records it first (Client.env_hash).
    """

    priority: int = 0
    queue: str = "default"
    retry: RetryPolicy | None = None
    deadline_s: float | None = None
    parent_run_id: str | None = None
    trigger: str = "client"
    trigger_id: str | None = None
    env_hash: str | None = None


DEFAULT_OPTIONS = SubmitOptions()


def build_requests(
    flow: Workflow,
    inputs: Sequence[Any],
    options: SubmitOptions = DEFAULT_OPTIONS,
    *,
    idempotency_keys: Sequence[str | None] | None = None,
    concurrency_keys: Sequence[str | None] | None = None,
    run_ids: Sequence[str] | None = None,
) -> list[SubmitRequest]:
    """One request per input, each validated against the workflow's input model; the keys
    and ids, when given, are one per input."""
    schema = flow.schema
    payloads = [encode_input(flow, value) for value in inputs]
    unique_keys = [flow.unique_key(payload) for payload in payloads]
    keys = list(idempotency_keys or [None] * len(payloads))
    ckeys = list(concurrency_keys or [None] * len(payloads))
    fresh = run_ids is None  # ids made up here: no run can hold them yet
    ids = [check_run_id(i) for i in run_ids] if run_ids is not None else []
    ids = ids or [new_run_id() for _ in payloads]
    retry_json = None if options.retry is None else options.retry.model_dump_json()
    return [
        SubmitRequest(
            run_id=ids[i],
            workflow=schema.name,
            version=schema.version,
            input_json=payloads[i],
            idempotency_key=keys[i],
            priority=options.priority,
            queue=options.queue,
            concurrency_key=ckeys[i],
            retry_json=retry_json,
            deadline_s=options.deadline_s,
            unique_key=unique_keys[i],
            parent_run_id=options.parent_run_id,
            trigger=options.trigger,
            trigger_id=options.trigger_id,
            fresh_id=fresh,
            env_hash=options.env_hash,
        )
        for i in range(len(payloads))
    ]


def one_request(
    flow: Workflow,
    input: Any,
    options: SubmitOptions,
    idempotency_key: str | None,
    concurrency_key: str | None,
    run_id: str | None,
) -> list[SubmitRequest]:
    """The request for a single run."""
    return build_requests(
        flow,
        [input],
        options,
        idempotency_keys=[idempotency_key],
        concurrency_keys=[concurrency_key],
        run_ids=[run_id] if run_id else None,
    )


def not_fresh(requests: Sequence[SubmitRequest]) -> Callable[[], None]:
    """A resent submission may have been stored already: let intake look its ids up."""

    def mark() -> None:
        for request in requests:
            request.fresh_id = False

    return mark


def raise_refusal(results: Sequence[SubmitResult], accepted: list[Any]) -> None:
    """Raise the first refusal among submission results, if any; a refusal for a full
    backlog carries the handles of the runs that were accepted (`accepted`)."""
    for result in results:
        if result.error is None:
            continue
        error_class = ERRORS_BY_CODE.get(result.error_code or "", WfrayError)
        if error_class is BacklogFullError:
            refused = BacklogFullError(
                f"{result.error} ({len(accepted)} of {len(results)} runs accepted)",
                retry_after_s=result.retry_after_s or 1.0,
            )
            refused.accepted = accepted  # type: ignore[attr-defined]
            raise refused
        raise error_class(result.error)
