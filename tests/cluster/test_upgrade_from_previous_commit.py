"""`wfray upgrade` from the previous commit's wfray to this one, with runs in flight.

A `ray start --head` whose processes have the previous commit's wfray first on their path
(`git archive` of PREVIOUS_COMMIT), as a cluster with the old release installed would. A
driver of that wfray starts wfray (its actors run the old code) and leaves two io steps and
two cpu steps held mid-step, more runs queued behind them. `wfray upgrade --restart` from
this commit (both report version 0.1.0 at schema 0013: --restart replaces them anyway)
stops the old coordinator; the held steps are let go; the old executors finish them and
hand their outcomes over; new actors start on this commit's code, shipped by the upgrade.
A driver of this commit then sees every run complete with one attempt per step, and each
step's side effect happened once. (tests/cluster/upgrade_scenario.py holds both drivers.)
"""

from __future__ import annotations

import atexit
import functools
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from tests.cluster.conftest import ROOT, Head, marked_env
from tests.conftest import service_unavailable
from wfray.domain.versions import SCHEMA_REVISION
from wfray.entrypoints.cli_support import Exit

PREVIOUS_COMMIT = "7494578"  # main before `wfray upgrade`: its actors know nothing of it
SCENARIO = Path(__file__).with_name("upgrade_scenario.py")
TIMEOUT_S = 300.0


@functools.cache
def head_code_first() -> Path:
    """The previous commit's `wfray` package, materialised from the repository's history."""
    target = Path(tempfile.mkdtemp(prefix="wfray-previous-"))
    atexit.register(shutil.rmtree, target, True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", PREVIOUS_COMMIT, "wfray"],
        capture_output=True,
        timeout=120,
    )
    if archive.returncode != 0:
        reason = archive.stderr.decode(errors="replace")[-500:]
        service_unavailable("the repository's history", f"no {PREVIOUS_COMMIT}: {reason}")
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def driver_env(head: Head, *path: Path) -> dict[str, str]:
    env = marked_env(head.mark)
    env["PYTHONPATH"] = ":".join(str(p) for p in path)
    env["RAY_ADDRESS"] = head.gcs_address
    return env


def drive(mode: str, env: dict[str, str], cwd: Path, *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, str(SCENARIO), mode, *args],
        cwd=cwd,  # not the repository: Ray puts a driver's folder on its workers' path
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, f"the {mode} driver failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_upgrade(env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str], threading.Event]:
    """`wfray upgrade --restart` in the background; the event fires once it waits for the
    held steps (its progress line), the old coordinator stopped."""
    upgrading = subprocess.Popen(
        [sys.executable, "-m", "wfray.entrypoints.cli", "upgrade", "--restart"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    stopped = threading.Event()

    def read() -> None:
        assert upgrading.stdout is not None
        for line in upgrading.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("waiting for "):  # the old coordinator is stopped by then
                stopped.set()
        stopped.set()  # it ended: the test reads what it said

    threading.Thread(target=read, daemon=True).start()
    return upgrading, lines, stopped


def test_an_upgrade_from_the_previous_commit_loses_and_repeats_nothing(
    ray_head: Head, tmp_path: Path
) -> None:
    previous = head_code_first()
    namespace = f"wfray-upgrade-{uuid.uuid4().hex[:8]}"
    data_dir = str(tmp_path / "data")
    old = drive(
        "old", driver_env(ray_head, previous, ROOT), tmp_path, data_dir, namespace, str(tmp_path)
    )
    assert old["wfray"] == str(previous / "wfray")
    assert old["executors_adopt"] and not any(old["executors_adopt"].values())  # old code
    assert old["not_started"] >= 1  # runs queued behind the held cpu steps

    env = driver_env(ray_head, ROOT)
    env.update({"WFRAY_DATA_DIR": data_dir, "WFRAY_NAMESPACE": namespace, "COLUMNS": "400"})
    upgrading, said, stopped = start_upgrade(env)
    try:
        assert stopped.wait(TIMEOUT_S), "the upgrade never stopped the old coordinator"
        (tmp_path / "crunch").touch()
        (tmp_path / "deliver").touch()
        assert upgrading.wait(TIMEOUT_S) == Exit.OK, "\n".join(said)
    finally:
        if upgrading.poll() is None:
            upgrading.kill()
        upgrading.wait(TIMEOUT_S)
        assert upgrading.stdout is not None
        upgrading.stdout.close()
    output = "\n".join(said)
    assert "stopped wfray-coordinator" in output and "replaced: wfray-coordinator" in output
    waited = re.findall(r"waited for (\d+) running attempts", output)
    assert sum(int(n) for n in waited) >= 2, output  # steps held mid-step (io or cpu first)
    handed = re.findall(r"handed (\d+) outcomes", output)
    assert sum(int(n) for n in handed) >= 4, output  # theirs and the io steps'
    assert "started the coordinator and executors on wfray" in output

    new = drive(
        "new", driver_env(ray_head, ROOT), tmp_path, data_dir, namespace, json.dumps(old["runs"])
    )
    assert new["wfray"] == str(ROOT / "wfray")
    assert new["executors_adopt"] and all(new["executors_adopt"].values())  # this code
    ((via, outcome),) = new["audited"]  # the upgrade is in the audit trail
    # the previous commit may be a schema behind: the upgrade then migrated the store first
    head = SCHEMA_REVISION
    migrated = rf"store: (already at schema {head}|migrated from schema \d+ to {head});"
    assert via == "cli" and re.match(migrated, outcome), outcome
    assert set(new["results"].values()) == {"crunched+delivered"}
    one_each = [["crunch", 1, "succeeded"], ["deliver", 1, "succeeded"]]
    assert new["attempts"] == {run_id: one_each for run_id in old["runs"]}
    journal = [tuple(line.split()[:2]) for line in (tmp_path / "journal").read_text().splitlines()]
    assert Counter(journal) == Counter((r, s) for r in old["runs"] for s in ("crunch", "deliver"))
