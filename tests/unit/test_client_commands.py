"""Client commands: each type has one handler, every call made anywhere has one, and the real
client is answered through them.

The client is wired to an in-process CoordinatorHost (memory store, inline executors) by a
stand-in for the actor handle: each call crosses the same `handle(command)` method the Ray
actor exposes, without Ray running.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import os
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import unit_flows
from tests.fixtures.stand_ins import ActorStandIn
from wfray.adapters.memory.executor import InlineExecutor
from wfray.adapters.memory.schedule_store import InMemoryScheduleStore
from wfray.adapters.ray import link
from wfray.adapters.ray.client import RayClient
from wfray.adapters.ray.host import CoordinatorHost
from wfray.application import client_commands
from wfray.application.client_commands import Command, Pid, Start
from wfray.application.queries import Queries
from wfray.bootstrap import (
    MEMORY_URL,
    System,
    SystemClock,
    build_audit_log,
    build_coordinator,
    build_store,
)
from wfray.config import Settings, load_settings
from wfray.coordinator import client_handlers
from wfray.coordinator.client_handlers import HANDLERS
from wfray.coordinator.scheduler import Scheduler
from wfray.domain.errors import IdempotencyConflictError, WfrayError
from wfray.domain.policy import RetryPolicy
from wfray.domain.status import RunStatus

pytestmark = pytest.mark.timeout(60)

REPO_ROOT = Path(__file__).resolve().parents[2]
CALLERS = ("wfray", "tests", "bench", "jobs")  # where commands are sent from
ANSWER_S = 10.0


def command_types() -> set[type[Any]]:
    """The command types of client_commands.py (`Command.__subclasses__()` would also list
    the classes `dataclass(slots=True)` replaced)."""
    return {
        value
        for value in vars(client_commands).values()
        if isinstance(value, type) and issubclass(value, Command) and value is not Command
    }


def table_keys() -> list[str]:
    """The command names written in the HANDLERS literal, repeats included."""
    tree = ast.parse(Path(client_handlers.__file__).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "HANDLERS"
            and isinstance(node.value, ast.Dict)
        ):
            return [key.id for key in node.value.keys if isinstance(key, ast.Name)]
    raise AssertionError("no HANDLERS dict literal in client_handlers.py")


def commands_sent() -> dict[str, list[str]]:
    """Every command constructed as the argument of `.call(...)` or `.remote(...)` in the
    code that talks to the coordinator, with where; and every `.call` given a string."""
    names = {kind.__name__ for kind in command_types()}
    sent: dict[str, list[str]] = {}
    for top in CALLERS:
        for path in sorted((REPO_ROOT / top).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            where = str(path.relative_to(REPO_ROOT))
            for match in re.finditer(r"\.call\(\s*(['\"][^'\"]*['\"])", text):
                sent.setdefault(f"string {match.group(1)}", []).append(where)
            if "client_commands" in text:  # only where commands are imported can they be made
                for name, line in _constructed(text, names, where):
                    sent.setdefault(name, []).append(f"{where}:{line}")
    return sent


def _constructed(text: str, names: set[str], where: str) -> Iterator[tuple[str, int]]:
    for node in ast.walk(ast.parse(text, filename=where)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"call", "remote"}
            and node.args
            and isinstance(node.args[0], ast.Call)
            and isinstance(node.args[0].func, ast.Name)
            and node.args[0].func.id in names
        ):
            yield node.args[0].func.id, node.lineno


def test_every_command_type_has_exactly_one_handler() -> None:
    assert set(HANDLERS) == command_types()
    repeated = [name for name, count in Counter(table_keys()).items() if count > 1]
    assert repeated == [], f"named twice in HANDLERS: {repeated}"
    assert len(set(HANDLERS.values())) == len(HANDLERS), "a handler serves two command types"
    for kind, handler in HANDLERS.items():
        _desk, command = inspect.signature(handler, eval_str=True).parameters.values()
        assert command.annotation is kind, f"{handler.__name__} takes {command.annotation}"


def test_the_handler_table_covers_every_call_the_client_makes() -> None:
    sent = commands_sent()
    strings = {name: where for name, where in sent.items() if name.startswith("string")}
    assert strings == {}, f"calls by method name: {strings}"
    handled = {kind.__name__ for kind in HANDLERS}
    assert set(sent) == handled, (
        f"sent but not handled: {set(sent) - handled}; handled but never sent: "
        f"{handled - set(sent)}"
    )


def test_an_unknown_command_is_refused_clearly() -> None:
    @dataclass(frozen=True)
    class Stray:  # not a Command subclass: the scans above stay exact
        pass

    with pytest.raises(WfrayError, match="no handler for Stray"):
        asyncio.run(client_handlers.answer(UnstartedDesk(), Stray()))  # type: ignore[arg-type]


class UnstartedDesk:
    async def ready(self, wait_s: float = 0.0) -> Any:
        raise AssertionError("an unknown command must not start anything")


# -- the real client, answered by an in-process host ---------------------------------------------


async def inline_system(settings: Settings) -> System:
    """The composition root's parts with the executors and schedule store in memory."""
    store = build_store(settings)
    shared = InlineExecutor()
    coordinator = build_coordinator(settings, store, {"cpu": shared, "io": shared})
    scheduler = Scheduler(InMemoryScheduleStore(), coordinator, SystemClock())
    audit = build_audit_log(settings, store)
    return System(store, coordinator, Queries(store), scheduler, loops=(), audit=audit)


@pytest.fixture
def wired(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[RayClient, ActorStandIn]]:
    settings = load_settings(data_dir=str(tmp_path), namespace="unit-cmd", database_url=MEMORY_URL)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    host = CoordinatorHost(settings, build=inline_system)
    actor = ActorStandIn(host, loop)
    monkeypatch.setattr(link.ray, "get", lambda ref, timeout: ref.result(timeout))
    unit_flows.reset()
    try:
        yield RayClient(settings, handle=actor), actor
    finally:
        asyncio.run_coroutine_threadsafe(host.stop(), loop).result(ANSWER_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(ANSWER_S)
        loop.close()


def test_the_client_keyword_api_reaches_the_coordinator_as_commands(
    wired: tuple[RayClient, ActorStandIn],
) -> None:
    client, actor = wired
    client.call(Start(ANSWER_S))
    assert client.call(Pid()) == os.getpid()  # the host runs in this process

    retry = RetryPolicy(max_attempts=2)
    run = client.submit(
        unit_flows.single,
        idempotency_key="key-1",
        priority=3,
        concurrency_key="c-1",
        run_id="run-1",
        retry=retry,
        deadline_s=60.0,
    )
    assert run.result(timeout=ANSWER_S) == 1
    again = client.submit(
        unit_flows.single, idempotency_key="key-1", priority=3, concurrency_key="c-1"
    )
    assert again.run_id == "run-1"
    with pytest.raises(IdempotencyConflictError):  # the key's run had priority 3
        client.submit(unit_flows.single, idempotency_key="key-1", concurrency_key="c-1")
    record = client.detail("run-1").run
    assert (record.priority, record.idempotency_key, record.concurrency_key) == (3, "key-1", "c-1")
    assert record.retry_json == retry.model_dump_json()
    assert record.deadline_at is not None

    many = client.submit_many(
        unit_flows.single,
        [None, None],
        run_ids=["child-1", "child-2"],
        parent_run_id="run-1",
        trigger="parent",
        trigger_id="only",
        chunk=1,
    )
    views = client.wait([h.run_id for h in many], timeout=ANSWER_S)
    assert [v.status for v in views] == [RunStatus.COMPLETED] * 2
    children = client.detail("child-2").run
    assert (children.parent_run_id, children.trigger, children.trigger_id) == (
        "run-1",
        "parent",
        "only",
    )
    assert client.execute(unit_flows.single, timeout=ANSWER_S, priority=1) == 1
    assert many[0].status() is RunStatus.COMPLETED

    assert {r.run_id for r in client.list_runs("unit_single", "completed")} >= {"run-1"}
    assert client.logs("run-1") == []
    assert client.stats()["queued"] == 0
    assert client.next_value("invoice") + 1 == client.next_value("invoice")
    assert client.cancel("run-1").applied is False  # it finished
    assert [r.applied for r in client.resume(["run-1"])] == [False]
    assert [r.applied for r in client.retry_compensation(["run-1"])] == [False]
    assert client.publish("nobody-listens", {"n": 1}, id="event-1") == []

    spec = client.create_schedule(unit_flows.single, name="nightly", cron="0 3 * * *")
    client.pause_schedule(spec.name)
    client.resume_schedule(spec.name)
    assert client.trigger_schedule(spec.name).result(timeout=ANSWER_S) == 1
    assert [s.name for s in client.list_schedules()] == ["nightly"]
    client.delete_schedule(spec.name)
    assert client.list_schedules() == []

    unknown = set(actor.sent) - set(HANDLERS)
    assert unknown == set()
    assert len(set(actor.sent)) >= 20, sorted(t.__name__ for t in set(actor.sent))


def test_the_coordinator_s_own_errors_reach_the_client_as_they_are(
    wired: tuple[RayClient, ActorStandIn],
) -> None:
    client, _ = wired
    with pytest.raises(WfrayError, match="unknown run status 'sleeping'"):
        client.list_runs(status="sleeping")
    with pytest.raises(WfrayError, match="no run with id 'missing'"):
        client.detail("missing")


def test_commands_are_frozen_values() -> None:
    """A resent command is the command first sent (only `not_fresh` marks its requests)."""
    for kind in command_types():
        assert dataclasses.is_dataclass(kind), kind
        assert kind.__dataclass_params__.frozen, kind  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        client_commands.Views(["a"]).run_ids = ["b"]  # type: ignore[misc]


def test_a_host_asks_at_its_start_not_in_its_constructor_whether_ray_restarted_it(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        data_dir=str(tmp_path), namespace="unit-restart", database_url=MEMORY_URL
    )
    store = build_store(settings)  # one store for both hosts, as for one actor restarted

    async def on_the_store(settings: Settings) -> System:
        shared = InlineExecutor()
        coordinator = build_coordinator(settings, store, {"cpu": shared, "io": shared})
        scheduler = Scheduler(InMemoryScheduleStore(), coordinator, SystemClock())
        audit = build_audit_log(settings, store)
        return System(store, coordinator, Queries(store), scheduler, loops=(), audit=audit)

    asked: list[str] = []

    def restarted() -> bool:
        asked.append("restarted?")
        return True

    async def scenario() -> tuple[str, str]:
        first = CoordinatorHost(settings, build=on_the_store)
        first_cause = (await first.ready(ANSWER_S)).coordinator.health.start_cause
        await first.stop()
        again = CoordinatorHost(settings, build=on_the_store, restarted=restarted)
        assert asked == []  # constructed: nothing asked yet
        cause = (await again.ready(ANSWER_S)).coordinator.health.start_cause
        await again.stop()
        return first_cause, cause

    try:
        assert asyncio.run(asyncio.wait_for(scenario(), 60)) == ("first_start", "process_died")
    finally:
        store.close()
    assert asked == ["restarted?"]
