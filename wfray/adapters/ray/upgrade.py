"""Upgrading wfray in place: the detached actors drained and started again on the wfray of
the process that upgrades, the store migrated in between, no run lost and none run twice.

It only asks the old actors what every wfray since version reporting answers (`versions`,
and the executors' `snapshot`), so it works from a release that knows nothing of upgrades:

1. the old coordinator is stopped for good: from then on nothing is dispatched;
2. each old executor is fenced (a snapshot with an epoch above any coordinator's: a dispatch
   of the old coordinator still on its way is refused, and the new coordinator runs that
   attempt, which never ran) and waited for until it runs nothing: its attempts finish
   where they run, and their outcomes stay in its outbox;
3. the store is migrated (the caller's `migrate`), while no wfray process writes to it;
4. the old executors' unacknowledged outcomes are taken, the old executors stopped, new ones
   started on this code and handed those outcomes before any coordinator exists;
5. the new coordinator starts and recovers as after any restart: it finds the outcomes in
   its executors' outboxes and commits them (one it had committed already is a duplicate and
   ignored); an attempt no executor knows never ran, and runs now; queued runs go on.

Every step looks at what is there first, so an upgrade stopped half-way (its drain timed
out, the database was down) is finished by running it again. Only between stopping an old
executor and handing its outcomes to its successor do they live in this process alone: if
it dies right there, those attempts are judged lost and run again (at-least-once, as after
an executor's crash). The outcomes handed over are
pickled by the old release and opened by this one, so `Outcome` must stay readable by the
next release (tests/cluster/test_upgrade_from_previous_commit.py upgrades from a pinned
earlier commit).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import exceptions as rex

from wfray.adapters.ray.actors import executor_actors
from wfray.adapters.ray.client import RayClient
from wfray.adapters.ray.connect import CONNECT_TIMEOUT_S
from wfray.adapters.ray.host import COORDINATOR_NAME, executor_actor_names, executor_name
from wfray.adapters.ray.versions import ASK_TIMEOUT_S, versions_call
from wfray.application.client_commands import Start
from wfray.application.wire import Sealed
from wfray.bootstrap import coordinator_actor
from wfray.config import Settings
from wfray.domain.errors import WaitTimeoutError
from wfray.domain.versions import CURRENT, Versions

# Above the epoch any coordinator takes from the store (one per start): an old executor
# fenced with it refuses every dispatch that reaches it afterwards.
FENCE_EPOCH = 1 << 62
DRAIN_POLL_S = 0.5
NAME_RELEASE_TIMEOUT_S = 60.0
WFRAY_PACKAGE = Path(__file__).resolve().parents[2]  # the `wfray` folder this code is in

# (schema revisions before, after): migrates the store to this wfray's head
Migrate = Callable[[], tuple[tuple[str, ...], tuple[str, ...]]]


@dataclass(frozen=True, slots=True)
class FoundActor:
    name: str
    versions: Versions | None  # None: it does not say (a wfray before version reporting)

    def shown(self) -> str:
        return f"{self.name} ({self.versions or 'no version reported'})"


@dataclass
class UpgradeReport:
    """What an upgrade found and did, for the operator."""

    namespace: str
    found: list[FoundActor] = field(default_factory=list)
    schema_before: tuple[str, ...] = ()
    schema_after: tuple[str, ...] = ()
    drained: dict[str, int] = field(default_factory=dict)  # executor -> attempts waited for
    handed_over: dict[str, int] = field(default_factory=dict)  # executor -> outcomes
    restarted: bool = False

    @property
    def nothing_to_do(self) -> bool:
        return not self.restarted and self.schema_before == self.schema_after

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for `--json` and the HTTP API."""
        return {
            "nothing_to_do": self.nothing_to_do,
            "namespace": self.namespace,
            "schema_before": list(self.schema_before),
            "schema_after": list(self.schema_after),
            "replaced": [
                {"name": a.name, "versions": a.versions and a.versions.as_dict()}
                for a in self.found
            ]
            if self.restarted
            else [],
            "drained": self.drained,
            "handed_over": self.handed_over,
        }

    def lines(self) -> list[str]:
        if self.nothing_to_do:
            return [
                f"nothing to do: wfray's actors in Ray namespace {self.namespace!r} already "
                f"run {CURRENT}, and the store is at schema {', '.join(self.schema_after)}"
            ]
        before = ", ".join(self.schema_before) or "empty"
        after = ", ".join(self.schema_after)
        lines = [
            f"store: migrated from schema {before} to {after}"
            if self.schema_before != self.schema_after
            else f"store: already at schema {after}"
        ]
        if not self.restarted:
            lines.append(
                f"wfray's actors in Ray namespace {self.namespace!r} already run {CURRENT}"
                if self.found
                else f"no wfray actors in Ray namespace {self.namespace!r}: none restarted "
                "(`wfray start` starts them on this wfray)"
            )
            return lines
        lines.append("replaced: " + "; ".join(actor.shown() for actor in self.found))
        for name, waited in sorted(self.drained.items()):
            handed = self.handed_over.get(name, 0)
            lines.append(
                f"drained {name}: waited for {waited} running attempts, handed "
                f"{handed} outcomes to its successor"
            )
        lines.append(f"started the coordinator and executors on {CURRENT}")
        return lines


def find_actors(namespace: str) -> list[FoundActor]:
    """wfray's coordinator and executors in this namespace, with the versions they report."""
    names = [*_named(COORDINATOR_NAME, namespace), *executor_actor_names(namespace)]
    return [FoundActor(name, _versions_of(name, namespace)) for name in names]


def _named(name: str, namespace: str) -> list[str]:
    try:
        ray.get_actor(name, namespace=namespace)
    except ValueError:
        return []
    return [name]


def _versions_of(name: str, namespace: str) -> Versions | None:
    ref = versions_call(ray.get_actor(name, namespace=namespace))
    if ref is None:
        return None
    try:
        return Versions.from_answer(ray.get(ref, timeout=ASK_TIMEOUT_S))
    except rex.RayTaskError:
        return None


def upgrade(
    settings: Settings,
    migrate: Migrate,
    drain_timeout_s: float,
    *,
    restart: bool = False,
    say: Callable[[str], None] = lambda _: None,
) -> UpgradeReport:
    """Bring the store and wfray's actors in `settings.namespace` to this wfray (see the
    module's docstring), telling `say` what it is doing; raises WaitTimeoutError if an
    executor still runs attempts after `drain_timeout_s` (run it again to go on waiting).
    With `restart`, actors that report this wfray's version are replaced too (a build of
    the same version with other code, say)."""
    namespace = settings.namespace
    report = UpgradeReport(namespace, find_actors(namespace))
    outdated = [actor for actor in report.found if restart or actor.versions != CURRENT]
    # executors without a coordinator: an upgrade that stopped before it started one
    headless = bool(report.found) and report.found[0].name != COORDINATOR_NAME
    if not (outdated or headless):
        report.schema_before, report.schema_after = migrate()
        return report
    env = code_env()  # uploaded before anything is stopped: a failure here changes nothing
    _stop(COORDINATOR_NAME, namespace)
    say(f"stopped {COORDINATOR_NAME}: nothing new is dispatched until its successor starts")
    deadline = time.monotonic() + drain_timeout_s
    executors = [a.name for a in report.found if a.name != COORDINATOR_NAME]
    held = {name: _drain(name, namespace, deadline, report, say) for name in executors}
    report.schema_before, report.schema_after = migrate()
    for name in executors:
        _stop(name, namespace)
    _start_on_this_code(settings, env, held)
    report.restarted = True
    return report


def _drain(
    name: str,
    namespace: str,
    deadline: float,
    report: UpgradeReport,
    say: Callable[[str], None],
) -> list[Sealed]:
    """Fence the executor, wait until it runs nothing, and take its unacknowledged outcomes."""
    handle: Any = ray.get_actor(name, namespace=namespace)
    waited: set[Any] = set()
    while True:
        snapshot: Any = ray.get(handle.snapshot.remote(0, FENCE_EPOCH), timeout=ASK_TIMEOUT_S)
        in_flight = list(snapshot.in_flight)
        if in_flight and not waited:
            say(f"waiting for {len(in_flight)} running attempts on {name} to finish")
        waited.update(in_flight)
        if not in_flight:
            report.drained[name] = len(waited)
            outcomes = [sealed for _, sealed in snapshot.items]
            report.handed_over[name] = len(outcomes)
            return outcomes
        if time.monotonic() > deadline:
            raise WaitTimeoutError(
                f"{name} still runs {len(in_flight)} attempts at the end of the upgrade's "
                "--timeout; the old coordinator is stopped, so nothing new starts and no "
                "outcome is lost: run `wfray upgrade` again to wait longer"
            )
        time.sleep(DRAIN_POLL_S)


def _stop(name: str, namespace: str) -> None:
    """Kill the actor for good and wait until its name is free for its successor."""
    try:
        ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
    except ValueError:
        return  # not there (an earlier upgrade stopped it)
    deadline = time.monotonic() + NAME_RELEASE_TIMEOUT_S
    while _named(name, namespace):
        if time.monotonic() > deadline:
            raise WaitTimeoutError(f"{name} was stopped but still holds its name")
        time.sleep(0.1)


def code_env() -> dict[str, Any]:
    """The runtime env of the new actors: this process's wfray package, uploaded to the
    cluster as Ray uploads a job's `py_modules` (a content-addressed package in its GCS), so
    that they run the upgrading wfray whatever the nodes have installed."""
    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed

    local = {"py_modules": [str(WFRAY_PACKAGE)], "excludes": ["__pycache__"]}
    with tempfile.TemporaryDirectory(prefix="wfray-upgrade-") as scratch:
        uploaded: dict[str, Any] = upload_py_modules_if_needed(
            local, include_gitignore=False, scratch_dir=scratch
        )
    uploaded.pop("excludes", None)
    return uploaded


def _start_on_this_code(
    settings: Settings, env: dict[str, Any], held: dict[str, list[Sealed]]
) -> None:
    handles = executor_actors(settings, runtime_env=env)
    by_name = {executor_name(executor): handle for executor, handle in handles.items()}
    for name, outcomes in held.items():
        # an executor no longer configured hands over to the first one of its pool
        pool = name.removeprefix(executor_name("")).partition(".")[0]
        successor = by_name.get(name) or by_name[executor_name(pool)]
        if outcomes:
            ray.get(successor.adopt.remote(outcomes), timeout=ASK_TIMEOUT_S)
    handle = coordinator_actor(settings, env)
    client = RayClient(settings, handle)
    client.call(Start(CONNECT_TIMEOUT_S - 10), timeout_s=CONNECT_TIMEOUT_S)
