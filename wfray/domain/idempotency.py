"""What an idempotency key promises: the same request, answered by the same run.

A key is bound to the request that first used it, remembered as a hash of what matters to
the run it started (workflow, input, queue, priority, concurrency key). The same key sent
again with the same request returns that run; with another, it is refused
(`IdempotencyConflictError`) instead of answering with a run that did something else.
"""

from __future__ import annotations

import hashlib
import json

from wfray.domain.errors import IdempotencyConflictError
from wfray.domain.records import RunRecord


def request_hash(
    workflow: str, input_json: str, queue: str, priority: int, concurrency_key: str | None
) -> str:
    """A hex SHA-256 of the request; the input's JSON is canonical (key order ignored)."""
    try:
        canonical = json.dumps(json.loads(input_json), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = input_json
    body = json.dumps([workflow, canonical, queue, priority, concurrency_key])
    return hashlib.sha256(body.encode()).hexdigest()


def check_claim(key: str, holder: RunRecord, workflow: str, wanted_hash: str) -> None:
    """Raise IdempotencyConflictError unless `holder` (the run holding `key`) was started
    by the same request. Runs stored before hashes were kept are checked by workflow only."""
    if holder.workflow != workflow:
        raise IdempotencyConflictError(
            f"idempotency key {key!r} was used for a run of workflow {holder.workflow!r}; "
            f"it cannot start a run of {workflow!r} (use another key)"
        )
    if holder.request_hash is not None and holder.request_hash != wanted_hash:
        raise IdempotencyConflictError(
            f"idempotency key {key!r} was used for a run of {workflow!r} with another input "
            "or other queue, priority or concurrency key; a key answers one request only "
            "(use another key)"
        )
