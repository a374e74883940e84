"""The `wfray` command end to end: start a local Ray with wfray, act on runs, stop it all.

Every command is a real subprocess of the installed `wfray` script. `wfray start --local`
owns its own Ray instance (not the test session's), and after `wfray stop` none of the
processes it started may be left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


class Cli:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.family: list[psutil.Process] = []  # what `start` started: the owner and below
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
            "WFRAY_DATA_DIR": str(data_dir),
            "WFRAY_NAMESPACE": f"wfray-cli-{uuid.uuid4().hex[:8]}",
            "RAY_AUTH_MODE": "disabled",
        }

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).with_name("wfray")), *args],
            cwd=REPO_ROOT,  # where tests.fixtures.flows imports from, as for a user's project
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        assert result.returncode == 0, f"{args}: {result.stderr}"
        return json.loads(result.stdout)

    def instance(self) -> dict[str, object]:
        record: dict[str, object] = json.loads((self.data_dir / "instance.json").read_text())
        return record


UNIQUE_FLOWS = "tests.fixtures.unique_flows"


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """One `wfray start --local` for the module (starting one costs 20-30 s): the tests run in
    file order, the last one stops it."""
    runner = Cli(tmp_path_factory.mktemp("cli") / "data")
    try:
        started = runner(
            "start", "--local", "--module", "tests.fixtures.flows", "--module", UNIQUE_FLOWS,
            "--num-cpus", "2", "--object-store-mb", "200",
        )  # fmt: skip
        log = runner.data_dir / "local-ray.log"
        assert started.returncode == 0, (
            f"{started.stderr}\n{log.read_text() if log.exists() else ''}"
        )
        owner = psutil.Process(int(str(runner.instance()["pid"])))
        runner.family = [owner, *owner.children(recursive=True)]
        yield runner
    finally:
        if (runner.data_dir / "instance.json").exists():
            runner("stop")
        for process in runner.family:  # whatever a failed test left behind, and only that
            if process.is_running():
                process.kill()


def test_submit_honours_the_policy_shows_the_key_and_refuses_a_bad_key(cli: Cli) -> None:
    week = f"W-{uuid.uuid4().hex[:6]}"
    given = json.dumps({"week": week})

    first = cli.json("submit", "unit_unique_once", "--input", given, "--wait")
    again = cli.json(
        "submit", "unit_unique_once", "--input", json.dumps({"week": week, "note": "x"})
    )
    assert first["status"] == "completed" and again["run_id"] == first["run_id"]
    shown = cli("show", first["run_id"])
    assert f"unique key weekly:{week}" in shown.stdout, shown.stdout
    detail = cli.json("show", first["run_id"])
    assert detail["run"]["unique_key"] == f"weekly:{week}"

    cli.json("submit", "unit_unique_refuse", "--input", given)
    refused = cli("submit", "unit_unique_refuse", "--input", given)
    assert refused.returncode == 1, refused.stderr
    assert f"holds uniqueness key 'weekly:{week}'" in refused.stderr

    bad = cli("submit", "unit_unique_bad_key", "--input", '{"week": "boom"}')
    assert bad.returncode == 2, bad.stderr
    assert "'unit_unique_bad_key'" in bad.stderr and "must be a string" in bad.stderr
    listed = cli.json("runs", "--workflow", "unit_unique_bad_key")
    assert listed == [] or listed.get("runs") == []


def test_start_submit_show_logs_cancel_retry_stop(cli: Cli, tmp_path: Path) -> None:
    family = cli.family
    names = {p.name() for p in family}
    assert {"raylet", "gcs_server"} <= names, names  # a Ray instance of its own
    # with Ray's dashboard on, on loopback: wfray's actors and named tasks show there
    dashboard = str(cli.instance()["dashboard_url"])
    assert dashboard.startswith("http://127.0.0.1:"), dashboard
    assert urllib.request.urlopen(dashboard, timeout=30).status == 200

    done = cli.json("submit", "numbers", "--input", '{"count": 4}', "--wait")
    assert (done["status"], done["result"]) == ("completed", 14)

    tree = cli("show", str(done["run_id"]))
    assert tree.returncode == 0, tree.stderr
    assert "square[3] completed" in tree.stdout
    assert "total completed" in tree.stdout
    assert "squaring 3" in cli("logs", str(done["run_id"]), "--step", "square").stdout

    # -f follows a run until it ends, so every line is there when it returns
    queued = cli("submit", "numbers", "--input", '{"count": 3}')
    assert queued.returncode == 0, queued.stderr
    followed = cli("logs", queued.stdout.strip(), "-f")
    assert followed.returncode == 0, followed.stderr
    assert [f"squaring {i}" in followed.stdout for i in range(3)] == [True, True, True]

    # a failed run: non-zero for --wait; fixed (the marker appears) and retried, it completes
    marker = tmp_path / "marker"
    failed = cli.json("submit", "needs_marker", "--input", json.dumps({"marker": str(marker)}))
    waited = cli("watch", str(failed["run_id"]))
    assert waited.returncode == 1
    marker.write_text("here")
    (resumed,) = cli.json("retry", str(failed["run_id"]))
    assert resumed["applied"], resumed
    assert cli("watch", str(failed["run_id"]), "--timeout", "60").returncode == 0

    # a long run, cancelled: watch then exits non-zero
    long = cli.json("submit", "cpu_hold", "--input", '{"seconds": 60}')
    (cancelled,) = cli.json("cancel", str(long["run_id"]))
    assert cancelled["applied"], cancelled
    watched = cli("watch", str(long["run_id"]), "--json", "--timeout", "60")
    assert watched.returncode == 1
    assert json.loads(watched.stdout)["status"] == "cancelled"

    # an event starts its subscriber once per event id
    published = cli.json(
        "publish", "parcel.shipped", "--payload", '{"parcel": "P-1"}', "--id", "e-1"
    )
    (tracking,) = published["result"]
    cli.json("publish", "parcel.shipped", "--payload", '{"parcel": "P-1"}', "--id", "e-1")
    assert [r["run_id"] for r in cli.json("runs", "--workflow", "on_shipped")] == [tracking]
    assert cli("watch", tracking, "--timeout", "60").returncode == 0
    run = cli.json("show", tracking)["run"]
    assert (run["workflow"], run["trigger"], run["trigger_id"]) == (
        "on_shipped",
        "event",
        "parcel.shipped:e-1",
    )

    # a schedule: created with its next fire times, triggered, paused, deleted
    made = cli.json(
        "schedule-create",
        "nightly",
        "--workflow",
        "numbers",
        "--cron",
        "0 3 * * *",
        "--tz",
        "Europe/Berlin",
        "--input",
        '{"count": 2}',
        "--module",
        "tests.fixtures.flows",
    )
    assert made["paused"] is False and len(made["next_fire_times"]) == 3
    berlin = ZoneInfo("Europe/Berlin")
    local = [datetime.fromisoformat(t).astimezone(berlin) for t in made["next_fire_times"]]
    assert [(t.hour, t.minute) for t in local] == [(3, 0)] * 3, made
    assert [s["name"] for s in cli.json("schedules")] == ["nightly"]
    fired = cli.json("schedule-trigger", "nightly")
    assert cli("watch", str(fired["run_id"]), "--timeout", "60").returncode == 0
    assert cli.json("schedule-pause", "nightly")["next_fire_times"] == []
    assert cli.json("schedule-delete", "nightly")["deleted"] is True
    assert cli("schedule-pause", "nightly").returncode == 3

    queues = cli.json("queues")
    assert "default" in {q["name"] for q in queues["queues"]}
    assert cli("cancel", "no-such-run").returncode == 3

    stopped = cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    _, alive = psutil.wait_procs(family, timeout=30)
    assert alive == [], [(p.pid, p.name()) for p in alive]
    assert not (cli.data_dir / "instance.json").exists()

    # the history stays readable without Ray; acting needs wfray again
    assert cli("show", str(done["run_id"])).returncode == 0
    unreachable = cli("submit", "numbers", "--input", '{"count": 1}')
    assert unreachable.returncode == 4
    assert "wfray start" in unreachable.stderr
