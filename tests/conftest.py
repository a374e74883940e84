"""Fixtures shared by every test tier.

Heavy imports (ray, sqlalchemy) stay inside fixtures so `tests/unit` never pays for them.
"""

from __future__ import annotations

import os

# Must be set before Ray starts: otherwise ray.init writes ~/.ray/auth_token and every HTTP
# client (Jobs SDK, State API, serve deploy) needs that token.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest
from hypothesis import settings as hypothesis_settings

from wfray.application.moments import CHAOS_DIR_ENV

# No per-example deadline: on a busy machine a property test's example may take longer than
# hypothesis' 200 ms default without anything being wrong (one flaked in CI that way).
hypothesis_settings.register_profile("wfray", deadline=None)
hypothesis_settings.load_profile("wfray")

if TYPE_CHECKING:
    import sqlalchemy

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

# Tests in these folders under tests/ run against the shared Ray instance.
_RAY_TIERS = frozenset({"integration", "fault", "cluster"})


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def service_unavailable(service: str, reason: str) -> NoReturn:
    """Skip locally, fail in CI: a missing service must never turn CI green by skipping."""
    if in_ci():
        pytest.fail(f"{service} is required in CI but unavailable: {reason}", pytrace=False)
    pytest.skip(f"!!! {service} UNAVAILABLE - test not run: {reason}")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Where the shared Ray instance serves its metrics (Prometheus text), once it runs.
RAY_METRICS_PORT = free_port()


@pytest.fixture(scope="session")
def chaos_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tests arm the engine's moments for the whole session's Ray (testing/chaos.py)."""
    return tmp_path_factory.mktemp("chaos")


@pytest.fixture(scope="session")
def ray_session(chaos_folder: Path) -> Iterator[None]:
    import ray

    # every Ray process of the session inherits it: tests arm moments there (testing/chaos.py)
    os.environ[CHAOS_DIR_ENV] = str(chaos_folder)
    try:
        # address="local": never attach to a stray `ray start` cluster on the host.
        ray.init(
            address="local",
            num_cpus=2,
            resources={"io": 4},
            include_dashboard=False,
            log_to_driver=False,
            namespace="wfray-test",
            object_store_memory=200 * 1024**2,
            _metrics_export_port=RAY_METRICS_PORT,
            # export every second, not every ten: the metrics tests wait for the figures
            _system_config={"metrics_report_interval_ms": 1000},
        )
    except Exception as exc:
        ray.shutdown()  # a half-started local cluster must not outlive the session
        service_unavailable("Ray", f"ray.init failed: {exc!r}")
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def _postgres_admin() -> Iterator[sqlalchemy.Engine]:
    """An AUTOCOMMIT engine on the admin database (CREATE/DROP DATABASE refuse transactions).

    Session scope so an unreachable server is probed once, not once per test.
    """
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    url = sa.make_url(os.environ.get("WFRAY_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    engine = sa.create_engine(
        url, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 5}
    )
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        engine.dispose()
        where = url.render_as_string(hide_password=True)
        service_unavailable("PostgreSQL", f"{where}: {exc.orig}")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(_postgres_admin: sqlalchemy.Engine) -> Iterator[str]:
    """URL of a fresh, empty database that is dropped after the test."""
    import sqlalchemy as sa

    name = f"wfray_t_{uuid.uuid4().hex[:16]}"
    with _postgres_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield _postgres_admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        # FORCE: a test that leaked a connection must not leave its database behind.
        with _postgres_admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'wfray.sqlite'}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).parent
    for item in items:
        try:
            tier = item.path.relative_to(tests_dir).parts[0]
        except ValueError:
            tier = ""
        if tier in _RAY_TIERS or "ray_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)
        if "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
