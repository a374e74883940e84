"""Intake's side of uniqueness keys: who holds each key during one loop turn, and what a
submission with a held key gets (the policy's decision is domain/uniqueness.py).

The coordinator is the single writer, so a key's holder is known exactly: the store's
answer from before the turn, overlaid by the coordinator's live runs (fresher statuses)
and by the runs started earlier in the same turn. Two submissions of one key in one batch,
or in racing batches, therefore meet one run.
"""

from __future__ import annotations

from collections.abc import Iterable

from wfray.application.messages import SubmitRequest, SubmitResult
from wfray.domain.errors import UniqueKeyError, UniqueRunError
from wfray.domain.records import RunRecord
from wfray.domain.uniqueness import UniqueAnswer, holds_before
from wfray.domain.workflow import WorkflowSchema

UniqueRef = tuple[str, str]  # (workflow, uniqueness key)


def unique_ref(request: SubmitRequest) -> UniqueRef | None:
    """The key a request is checked under; a parent's children are its own (it waits for
    the ids it chose), so they carry their key but are not checked."""
    if request.unique_key is None or request.trigger == "parent":
        return None
    return (request.workflow, request.unique_key)


class UniqueHolders:
    """The run holding each uniqueness key asked about in one intake turn."""

    def __init__(
        self,
        wanted: Iterable[UniqueRef],
        stored: dict[UniqueRef, RunRecord],
        live: Iterable[RunRecord],
    ) -> None:
        refs = set(wanted)
        self.holders = dict(stored)
        for run in live:  # the coordinator's runs are fresher than the store's rows
            ref = (run.workflow, run.unique_key or "")
            if run.unique_key is None or ref not in refs:
                continue
            held = self.holders.get(ref)
            if held is None or held.run_id == run.run_id or holds_before(run, held):
                self.holders[ref] = run

    def answer(self, request: SubmitRequest, schema: WorkflowSchema) -> SubmitResult | None:
        """The answer to `request` if its key decides it (an existing run or a refusal);
        None when a new run may start."""
        ref = unique_ref(request)
        if schema.unique is not None and request.unique_key is None:
            error = UniqueKeyError(
                f"workflow {schema.name!r} declares a uniqueness key, but the request has "
                "none: submit from a process that declares the workflow (the key is computed "
                "where the input is validated)"
            )
            return SubmitResult(request.run_id, False, error.message, error.code)
        if ref is None or schema.unique is None:
            return None
        holder = self.holders.get(ref)
        decision = schema.unique.decide(None if holder is None else holder.status)
        if decision is UniqueAnswer.NEW or holder is None:
            return None
        if decision is UniqueAnswer.EXISTING:
            return SubmitResult(holder.run_id, created=False)
        state = "active" if not holder.status.finished else "finished"
        policy = schema.unique.while_active if state == "active" else schema.unique.after_finished
        refused = UniqueRunError(
            f"workflow {schema.name!r}: run {holder.run_id} holds uniqueness key "
            f"{ref[1]!r} and is {holder.status.value}; the policy "
            f"({'while_active' if state == 'active' else 'after_finished'}={policy!r}) "
            "refuses another run"
        )
        return SubmitResult(request.run_id, False, refused.message, refused.code)

    def started(self, run: RunRecord) -> None:
        """A run started in this turn now holds its key."""
        if run.unique_key is not None and run.trigger != "parent":
            self.holders[(run.workflow, run.unique_key)] = run
