"""What the client sends to start runs, and how it reads the coordinator's refusals."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from wfray.application.definition import Workflow, encode_input
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
from wfray.domain.ids import check_run_id
from wfray.domain.policy import RetryPolicy

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


def build_requests(
    flow: Workflow,
    inputs: Sequence[Any],
    *,
    idempotency_keys: Sequence[str | None] | None = None,
    priority: int = 0,
    queue: str = "default",
    concurrency_keys: Sequence[str | None] | None = None,
    run_ids: Sequence[str] | None = None,
    retry: RetryPolicy | None = None,
    deadline_s: float | None = None,
    parent_run_id: str | None = None,
    trigger: str = "client",
    trigger_id: str | None = None,
) -> list[SubmitRequest]:
    """One request per input, each validated against the workflow's input model."""
    schema = flow.schema
    payloads = [encode_input(flow, value) for value in inputs]
    unique_keys = [flow.unique_key(payload) for payload in payloads]
    keys = list(idempotency_keys or [None] * len(payloads))
    ckeys = list(concurrency_keys or [None] * len(payloads))
    fresh = run_ids is None  # ids made up here: no run can hold them yet
    ids = [check_run_id(i) for i in run_ids] if run_ids is not None else []
    ids = ids or [uuid.uuid4().hex for _ in payloads]
    retry_json = None if retry is None else retry.model_dump_json()
    return [
        SubmitRequest(
            run_id=ids[i],
            workflow=schema.name,
            version=schema.version,
            input_json=payloads[i],
            idempotency_key=keys[i],
            priority=priority,
            queue=queue,
            concurrency_key=ckeys[i],
            retry_json=retry_json,
            deadline_s=deadline_s,
            unique_key=unique_keys[i],
            parent_run_id=parent_run_id,
            trigger=trigger,
            trigger_id=trigger_id,
            fresh_id=fresh,
        )
        for i in range(len(payloads))
    ]


def one_run(
    input: Any, idempotency_key: str | None, concurrency_key: str | None, run_id: str | None
) -> dict[str, Any]:
    """The per-run arguments of `build_requests` for a single run."""
    return {
        "inputs": [input],
        "idempotency_keys": [idempotency_key],
        "concurrency_keys": [concurrency_key],
        "run_ids": [run_id] if run_id else None,
    }


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
