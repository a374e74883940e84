"""Shared by the benchmarks: Ray start-up, throwaway wfray instances, statistics, output.

Every benchmark owns one local Ray instance (`address="local"`), started and shut down by
itself: nothing here attaches to, or stops, another Ray cluster on the host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

log = logging.getLogger("bench")

GET_TIMEOUT_S = 120.0  # every ray.get has one: an infeasible task would hang silently
DEFAULT_POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def setup_logging(verbose: bool = False) -> None:
    """Our logs go to stderr, so stdout stays free for the results."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


def start_ray(settle_s: float = 30.0) -> None:
    """Start the local Ray instance, then wait until its start-up work has died down."""
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        resources={"io": 4},
        include_dashboard=False,
        log_to_driver=False,
    )
    # Ray's agents and prestarted workers keep a CPU busy for a few seconds after init
    deadline = time.perf_counter() + settle_s
    busy = float("nan")
    while time.perf_counter() < deadline:
        before = tree_cpu_s()
        time.sleep(1.0)
        after = tree_cpu_s()
        busy = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
        if busy < 0.1:
            break
    log.info("Ray instance settled (%.2f cores busy over the last second)", busy)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to fd 1 (ours, Ray's, child processes') to stderr meanwhile."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


# -- stores and wfray instances ---------------------------------------------------------------


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A throwaway database `wfray_bench_<hex>`, dropped afterwards; yields its URL."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    admin_url = os.environ.get("WFRAY_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    admin = sa.create_engine(
        admin_url,
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"connect_timeout": 5},
    )
    name = f"wfray_bench_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        log.info("created PostgreSQL database %s", name)
        try:
            yield admin.url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            log.info("dropped PostgreSQL database %s", name)
    finally:
        admin.dispose()


def postgres_backend_pids(url: str) -> list[int]:
    """Pids of the PostgreSQL server processes connected to the database named in `url`."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    if not url.startswith("postgresql"):
        return []
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            return [int(pid) for pid in conn.execute(query).scalars()]
    finally:
        engine.dispose()


def actor_pids(client: Any) -> dict[str, int]:
    """Process ids of this wfray instance's actors: coordinator, cpu and io executors."""
    import ray

    from wfray.adapters.ray.host import executor_name
    from wfray.application.client_commands import Pid

    pids = {"coordinator": int(client.call(Pid()))}
    for pool in ("cpu", "io"):
        handle: Any = ray.get_actor(executor_name(pool), namespace=client.settings.namespace)
        pids[f"executor-{pool}"] = int(ray.get(handle.pid.remote(), timeout=GET_TIMEOUT_S))
    return pids


@contextlib.contextmanager
def wfray_instance(store: str, **overrides: Any) -> Iterator[Any]:
    """A fresh wfray (own namespace, own data dir, own database) on the running Ray instance.

    Shut down afterwards, and only left once its actor processes are gone, so they cannot
    compete for the CPUs with whatever is measured next.
    """
    import wfray

    with contextlib.ExitStack() as stack:
        data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="wfray-bench-"))
        if store == "sqlite":
            url = f"sqlite:///{data_dir}/wfray.db"
        elif store == "postgres":
            url = stack.enter_context(postgres_database())
        else:
            raise ValueError(f"unknown store {store!r}")
        namespace = f"wfray-bench-{uuid.uuid4().hex[:8]}"
        # env={}: WFRAY_* variables of the caller's shell must not change what is measured
        settings = wfray.load_settings(
            env={},
            data_dir=data_dir,
            namespace=namespace,
            database_url=url,
            sqlite_synchronous="FULL",
            **overrides,
        )
        started = time.perf_counter()
        client = wfray.connect(settings)
        log.info(
            "wfray (%s) up in namespace %s in %.1fs",
            store,
            namespace,
            time.perf_counter() - started,
        )
        pids = actor_pids(client)
        try:
            yield client
        finally:
            client.shutdown()
            procs = []
            for pid in pids.values():
                with contextlib.suppress(psutil.NoSuchProcess):
                    procs.append(psutil.Process(pid))
            _, alive = psutil.wait_procs(procs, timeout=30)
            if alive:
                log.warning("wfray actors still alive 30s after shutdown: %s", alive)


# -- statistics -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated linearly between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class Measurement:
    """Steps completed, wall time from the first submit to the last completion, latencies."""

    steps: int
    wall_s: float
    latencies_s: tuple[float, ...]
    foreign_cores: float = 0.0  # CPU other processes on the host used meanwhile

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.wall_s

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_s, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_s, 99) * 1000


def mib(value: float) -> float:
    return value / (1024 * 1024)


def peak_rss(pid: int) -> int | None:
    """The process's peak resident set (VmHWM) in bytes; None where /proc has no such line."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# -- host noise -------------------------------------------------------------------------------


class ForeignLoad:
    """CPU used on the host by processes outside this benchmark's process tree.

    Our tree is this process and its descendants: a local `ray.init` starts the GCS and the
    raylet as our children, and Ray's workers and actors as theirs; `extra_pids` names
    processes that work for us outside it (the PostgreSQL backends serving our database).
    What else kept the
    CPUs busy meanwhile (another Ray cluster, a test run) is reported in cores, so a
    measurement taken on a busy shared host can be recognised as such.
    """

    def __init__(self, extra_pids: Callable[[], Iterable[int]] | None = None) -> None:
        self._extra = extra_pids or (lambda: ())
        self._wall = time.perf_counter()
        self._host = _host_busy_s()
        self._ours = tree_cpu_s(self._extra())

    def cores(self) -> float:
        wall, host, ours = time.perf_counter(), _host_busy_s(), tree_cpu_s(self._extra())
        elapsed = wall - self._wall
        if elapsed <= 0:
            return 0.0
        # per process: one that exited meanwhile counts as idle (its last figures are gone)
        used = sum(cpu - self._ours.get(pid, 0.0) for pid, cpu in ours.items())
        return max(0.0, ((host - self._host) - used) / elapsed)


def _host_busy_s() -> float:
    times = psutil.cpu_times()
    busy = times.user + times.system
    # Linux; steal: time the hypervisor gave to other guests, lost to us all the same
    for extra in ("nice", "irq", "softirq", "steal"):
        busy += getattr(times, extra, 0.0)
    return float(busy)


def tree_cpu_s(extra_pids: Iterable[int] = ()) -> dict[int, float]:
    """CPU seconds (user+system) so far of this process, each descendant and `extra_pids`."""
    me = psutil.Process()
    used = {}
    procs = [me, *me.children(recursive=True)]
    for pid in extra_pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            cpu = proc.cpu_times()
            used[proc.pid] = cpu.user + cpu.system
    return used


def cell(value: Any) -> str:
    """A figure as the growth tables print it: thousands separated, two decimals below 10."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"
    return f"{value:,}"
