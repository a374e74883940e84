"""What an executor launches and what it says of attempts it could not run: envelopes (a
sealed dispatch with what launching it needs), their Ray task names, and the outcomes of
attempts stopped, refused or left without their runtime env."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

from ray import exceptions as rex

from wfray.application.messages import Dispatch, Outcome
from wfray.application.wire import Sealed, seal
from wfray.domain.records import AttemptKey
from wfray.domain.status import AttemptStatus
from wfray.worker.outbox import Outbox

log = logging.getLogger("wfray.executor")
RunEnv = tuple[str, str]  # an env's hash, and the runtime_env Ray builds for it as JSON


class Envelope(NamedTuple):
    """A sealed dispatch with what its executor needs to launch and watch it."""

    key: AttemptKey
    num_cpus: float
    resources: tuple[tuple[str, float], ...]
    timeout_s: float | None
    report_directly: bool
    shareable: bool
    dispatch: Sealed
    task_name: str  # the Ray task's name in the Ray Dashboard: task_name()
    # the run's runtime env: (hash, Ray's runtime_env as JSON), None for the cluster's own
    env: RunEnv | None = None

    @classmethod
    def of(cls, d: Dispatch) -> Envelope:
        num_cpus = 1.0 if d.num_cpus is None else d.num_cpus
        resources = tuple(sorted(d.resources.items()))
        env = None
        if d.env_hash is not None and d.runtime_env_json is not None:
            env = (d.env_hash, d.runtime_env_json)
        return cls(
            d.attempt_key,
            num_cpus,
            resources,
            d.timeout_s,
            d.report_directly,
            d.shareable,
            seal(d),
            task_name(d.workflow, d.step),
            env,
        )


def task_name(workflow: str, step: str) -> str:
    """What the Ray Dashboard lists a cpu attempt's task as (several attempts of one step
    that share a task too)."""
    return f"wfray:{workflow}.{step}"


def env_failed(key: AttemptKey, exc: BaseException) -> Sealed:
    """An attempt whose runtime env Ray could not build: failed with Ray's error, and not
    retried (building the same env again fails the same way; `wfray resume` tries again)."""
    message = str(exc)[:4000]
    outcome = Outcome.ended(key, AttemptStatus.FAILED, "ray.RuntimeEnvSetupError", message)
    outcome.retryable = False
    return seal(outcome)


def package_failed(key: AttemptKey, why: str) -> Sealed:
    """An attempt whose env names a package Ray lost and wfray could not put back (its copy
    missing or damaged): failed, saying which, and not retried (`wfray resume` tries again)."""
    outcome = Outcome.ended(key, AttemptStatus.FAILED, "wfray.PackageUnavailable", why[:4000])
    outcome.retryable = False
    return seal(outcome)


def unreadable_env(key: AttemptKey) -> Sealed:
    message = "the run's runtime env could not be read from the store: not run elsewhere"
    outcome = Outcome.ended(key, AttemptStatus.FAILED, "wfray.RuntimeEnvUnreadable", message)
    outcome.retryable = False
    return seal(outcome)


def is_env_failure(exc: BaseException) -> bool:
    """Ray's error for an env it could not build: a task's own, or an actor's death from it."""
    if isinstance(exc, rex.RuntimeEnvSetupError):
        return True
    return isinstance(exc, rex.ActorDiedError) and "runtime env" in str(exc).lower()


def _ended(key: AttemptKey, status: AttemptStatus, kind: str, message: str) -> Sealed:
    return seal(Outcome.ended(key, status, kind, message))


def stopped(
    key: AttemptKey, timed_out: bool, timeout_s: float | None, default: bool = False
) -> Sealed:
    """How an attempt this executor stopped ended: past its timeout, or cancelled."""
    if timed_out:
        message = f"attempt exceeded its timeout of {timeout_s}s and was stopped"
        if default:
            message = (
                f"attempt exceeded {timeout_s}s, the default timeout of sync io steps "
                "(WFRAY_IO_SYNC_TIMEOUT_S; give the step its own timeout_s to choose), and "
                "was stopped"
            )
        return _ended(key, AttemptStatus.TIMED_OUT, "wfray.AttemptTimeout", message)
    return _ended(key, AttemptStatus.CANCELLED, "wfray.Cancelled", "cancelled")


def admitted(outbox: Outbox, envelopes: list[Envelope], epoch: int) -> bool:
    """Whether these dispatches may run: not if an earlier coordinator sent them (outbox.py)."""
    if outbox.admits(epoch):
        return True
    log.warning(
        "refused %d attempts dispatched by an earlier coordinator (epoch %d < %d): the "
        "current one judged them lost and runs them again",
        len(envelopes),
        epoch,
        outbox.epoch,
    )
    return False


def _by_name(envelope: Envelope) -> str:
    return envelope.task_name


def _split_by_name(shared: Sequence[Envelope]) -> list[tuple[Envelope, ...]]:
    """A shared task's attempts cut where their step changes: each task is named after its
    step, at the cost of one task more per step boundary (they arrive sorted by name)."""
    parts: list[tuple[Envelope, ...]] = []
    start = 0
    for i in range(1, len(shared) + 1):
        if i == len(shared) or shared[i].task_name != shared[start].task_name:
            parts.append(tuple(shared[start:i]))
            start = i
    return parts
