"""Restart the PostgreSQL server under a busy coordinator: every run still completes once.

The test runs its own throwaway server (initdb + pg_ctl as the postgres OS user, trust auth,
a free port on 127.0.0.1, a socket folder of its own), so the restart hurts nobody else.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, service_unavailable
from tests.fixtures import flows
from tests.integration.conftest import start_wfray
from wfray.application.client_commands import Pid
from wfray.domain.status import AttemptStatus, RunStatus

CHAINS = 150
HOLDS = 150
HOLD_S = 0.3
OUTAGE_S = 2.0
LATE = 20  # runs submitted while the server is down
PG_USER = "postgres"


@dataclass
class PgServer:
    bin_dir: Path
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def run(self, tool: str, *args: str, timeout_s: float = 60) -> str:
        command = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", PG_USER, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, cwd=self.root
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self) -> None:
        options = f"-k {self.root} -c listen_addresses=127.0.0.1 -p {self.port}"
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options,
                 "-w", "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "log").read_text()[-3000:]
        return ""


def find_bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(found[0]).parent if found else None


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    bin_dir = find_bin_dir()
    if bin_dir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        service_unavailable("PostgreSQL", "no /usr/lib/postgresql/*/bin/initdb (or runuser)")
    root = Path(tempfile.mkdtemp(prefix="wfpg-", dir="/tmp"))  # short: the socket lives here
    if os.geteuid() == 0:
        shutil.chown(root, user=PG_USER)
    server = PgServer(bin_dir, root, free_port())
    started = False
    try:
        try:
            server.run("initdb", "-D", str(server.data), "-A", "trust", "-U", PG_USER,
                       "--no-sync", "--no-instructions")  # fmt: skip
            server.start()
            started = True
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            service_unavailable("PostgreSQL", f"could not start a throwaway server: {exc}")
        yield server
    finally:
        if started:
            with contextlib.suppress(Exception):
                server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def wf(ray_session: None, pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    client = start_wfray(tmp_path_factory.mktemp("pg-restart"), database_url=pg_server.url)
    yield client
    client.shutdown()


class LateSubmitter(threading.Thread):
    def __init__(self, client: Any) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.run_ids: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            runs = self.client.submit_many(flows.hold, [{"seconds": HOLD_S}] * LATE)
            self.run_ids = [r.run_id for r in runs]
        except BaseException as exc:
            self.error = exc


def test_runs_complete_once_across_a_postgres_restart(wf: Any, pg_server: PgServer) -> None:
    assert wf.settings.database_url == pg_server.url
    run_ids = [r.run_id for r in wf.submit_many(flows.chain, [None] * CHAINS)]
    run_ids += [r.run_id for r in wf.submit_many(flows.hold, [{"seconds": HOLD_S}] * HOLDS)]
    deadline = time.monotonic() + 60
    while wf.stats()["running_attempts"] < 50:
        assert time.monotonic() < deadline, "the runs did not start"
        time.sleep(0.05)

    pid_before = wf.call(Pid())
    t0 = time.monotonic()
    pg_server.stop("fast")
    # a submission arriving during the outage is answered once the database is back
    late = LateSubmitter(wf)
    late.start()
    time.sleep(OUTAGE_S)
    pg_server.start()
    t1 = time.monotonic()
    late.join(timeout=90)
    assert not late.is_alive(), "a submission made during the outage never returned"
    assert late.error is None, repr(late.error)
    assert len(late.run_ids) == LATE
    run_ids += late.run_ids
    # the coordinator waited for the database instead of crashing and restarting
    assert wf.call(Pid()) == pid_before

    views = wf.wait(run_ids, timeout=120)
    t2 = time.monotonic()
    assert len(views) == len(run_ids), pg_server.log()
    assert Counter(v.status for v in views) == Counter({RunStatus.COMPLETED: len(run_ids)})
    statuses: Counter[str] = Counter()
    tasks = 0
    for run_id in run_ids:
        detail = wf.detail(run_id)
        assert detail.run.status is RunStatus.COMPLETED
        succeeded: Counter[tuple[str, int]] = Counter()
        for attempt in detail.attempts:
            statuses[attempt.status.value] += 1
            if attempt.status is AttemptStatus.SUCCEEDED:
                succeeded[attempt.task_key] += 1
            else:
                assert attempt.status is AttemptStatus.LOST, (run_id, attempt)
        assert succeeded == Counter({t.key: 1 for t in detail.tasks}), (run_id, detail)
        tasks += len(detail.tasks)
    assert statuses["succeeded"] == tasks
    assert statuses["lost"] == 0  # nothing ran twice: the executors kept every outcome
    print(
        f"outage {t1 - t0:.1f}s, then all done in {t2 - t1:.1f}s; {len(run_ids)} runs, "
        f"{tasks} tasks, attempts {dict(statuses)}"
    )
