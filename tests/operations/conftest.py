"""wfray on a real SQL store (SQLite and PostgreSQL) without Ray: the coordinator host runs
in-process on an event loop of its own, the real client reaches it through a stand-in for
the actor handle, and the real HTTP API is served by uvicorn on a loopback port."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.fixtures import unit_flows
from tests.fixtures.stand_ins import ActorStandIn

ANSWER_S = 30.0
READ = "read-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
TOKENS_JSON = json.dumps(
    {"dash": {"token": READ, "scopes": ["read"]}, "ops": {"token": ADMIN, "scopes": ["admin"]}}
)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def sql_system(settings: Any) -> Any:
    """The composition root's parts on the settings' SQL store, executors inline."""
    from wfray.adapters.memory.executor import InlineExecutor
    from wfray.application.queries import Queries
    from wfray.bootstrap import (
        System,
        SystemClock,
        build_audit_log,
        build_coordinator,
        build_schedule_store,
        build_store,
    )
    from wfray.coordinator.scheduler import Scheduler

    store = await asyncio.to_thread(build_store, settings)
    shared = InlineExecutor()
    coordinator = build_coordinator(settings, store, {"cpu": shared, "io": shared})
    scheduler = Scheduler(build_schedule_store(settings, store), coordinator, SystemClock())
    audit = build_audit_log(settings, store)
    return System(store, coordinator, Queries(store), scheduler, loops=(), audit=audit)


async def _cancel_the_rest() -> None:
    """Steps still running (long naps) end with the test, as a stopped process would."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


@dataclass
class Wired:
    settings: Any
    client: Any
    url: str  # the store's


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'wfray.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def wired(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Wired]:
    from wfray.adapters.ray import link
    from wfray.adapters.ray.client import RayClient
    from wfray.adapters.ray.host import CoordinatorHost
    from wfray.application.client_commands import Start
    from wfray.config import load_settings, parse_api_tokens

    settings = load_settings(
        data_dir=str(tmp_path / "data"),
        namespace="ops-audit",
        database_url=store_url,
        modules=("tests.fixtures.unit_flows",),
        api_tokens=parse_api_tokens(TOKENS_JSON),
        api_max_body_bytes=4 * 1024 * 1024,
        api_audit_flush_s=0.2,
        api_port=free_port(),
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    host = CoordinatorHost(settings, build=sql_system)
    monkeypatch.setattr(link.ray, "get", lambda ref, timeout: ref.result(timeout))
    unit_flows.reset()
    client = RayClient(settings, handle=ActorStandIn(host, loop))
    try:
        client.call(Start(ANSWER_S), timeout_s=ANSWER_S)
        yield Wired(settings, client, store_url)
    finally:
        asyncio.run_coroutine_threadsafe(host.stop(), loop).result(ANSWER_S)
        asyncio.run_coroutine_threadsafe(_cancel_the_rest(), loop).result(ANSWER_S)
        if host.system is not None:
            host.system.store.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(ANSWER_S)
        loop.close()


@pytest.fixture
def api(wired: Wired) -> Iterator[httpx.Client]:
    """The real HTTP API over the wired client, served by uvicorn on loopback."""
    import uvicorn

    from wfray.entrypoints.http.app import create_app

    app = create_app(wired.settings, wired.client)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=wired.settings.api_port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + ANSWER_S
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{wired.settings.api_port}", timeout=30) as h:
            yield h
    finally:
        server.should_exit = True
        thread.join(ANSWER_S)


def wait_for(check: Any, timeout_s: float = ANSWER_S, what: str = "") -> Any:
    """Poll `check()` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or check}")
        time.sleep(0.05)
