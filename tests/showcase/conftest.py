"""Fixtures for the invoice showcase: a seeded local Ninox server on loopback and clients."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from jobs.invoices.ninox_client import NinoxClient, NinoxConfig
from jobs.invoices.ninox_server import ServerInfo, running_server
from jobs.invoices.seed import DATABASE_ID, TEAM_ID, build_state

API_KEY = "0f3c9a52-1a26-11ec-9621-0242ac130002"
# The clock of the seeded server is in UTC+2, so a test can see the API write UTC.
SERVER_TIME = datetime(2025, 11, 28, 9, 30, 15, tzinfo=timezone(timedelta(hours=2)))
SERVER_TIME_UTC = SERVER_TIME.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
DB_PATH = f"/teams/{TEAM_ID}/databases/{DATABASE_ID}"


@pytest.fixture
def ninox_server() -> Iterator[ServerInfo]:
    state = build_state(seed=7, clock=lambda: SERVER_TIME)
    with running_server(state=state, api_key=API_KEY) as server:
        yield server


@pytest.fixture
def api(ninox_server: ServerInfo) -> Iterator[httpx.Client]:
    """Raw HTTP on the database root, with the right key."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=ninox_server.base_url + DB_PATH, headers=headers, timeout=10) as c:
        yield c


def client_config(server: ServerInfo, timeout_s: float = 10.0) -> NinoxConfig:
    return NinoxConfig(
        api_key=server.api_key,
        team_id=TEAM_ID,
        database_id=DATABASE_ID,
        base_url=server.base_url,
        timeout_s=timeout_s,
    )


@pytest.fixture
def ninox(ninox_server: ServerInfo) -> Iterator[NinoxClient]:
    with NinoxClient(client_config(ninox_server)) as client:
        yield client
