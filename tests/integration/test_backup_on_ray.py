"""`wfray backup` under load and `wfray restore` into a fresh instance, on the shared Ray.

The first instance holds runs in flight (their io step waits on a gate, their first step's
result is a blob) and commits a stream of quick runs while the backup (the real `wfray`
command, a subprocess) copies it. It is then shut down and its data folder deleted. The
backup is restored into a new data folder, under a new namespace; the second instance must
finish every run the backup holds unfinished, each step with exactly one result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import backup_flows
from tests.integration.conftest import start_wfray
from wfray.adapters.sqlalchemy.store import SqlRunStore
from wfray.domain.status import AttemptStatus, RunStatus, TaskStatus

REPO_ROOT = Path(__file__).resolve().parents[2]
BLOB_THRESHOLD = 64  # bytes: the orders' first step's result goes to the blob store
ORDERS = 6


def wfray_cli(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("wfray")), *args],
        cwd=REPO_ROOT,
        env={**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_backup_under_load_then_restore_finishes_every_run_in_flight(
    ray_session: None, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    first_dir, second_dir, folder = tmp_path / "first", tmp_path / "second", tmp_path / "backup"
    first = start_wfray(first_dir, blob_threshold_bytes=BLOB_THRESHOLD)
    quick_ids: list[str] = []
    try:
        inputs = [backup_flows.Order(number=i, gate=str(gate)) for i in range(ORDERS)]
        order_ids = [h.run_id for h in first.submit_many(backup_flows.orders, inputs)]
        store = SqlRunStore(first.settings.database_url, create=False)
        try:  # in flight: a first step done (its result a blob), the waits running
            wait_for(
                lambda: (
                    sum(
                        t.status is TaskStatus.RUNNING and t.step == "wait"
                        for t in store.get_tasks(order_ids)
                    )
                    >= 2
                ),
                120,
                "the orders' io steps to run",
            )
        finally:
            store.close()
        stop = threading.Event()

        def load() -> None:  # the coordinator commits all along the backup
            n = 0
            while not stop.is_set():
                handles = first.submit_many(backup_flows.quick, [{"n": n + i} for i in range(10)])
                quick_ids.extend(h.run_id for h in handles)
                n += 10

        writer = threading.Thread(target=load, daemon=True)
        writer.start()
        wait_for(lambda: len(quick_ids) >= 20, 120, "the load to start")
        backed = wfray_cli({"WFRAY_DATA_DIR": str(first_dir)}, "backup", str(folder), "--json")
        stop.set()
        writer.join(timeout=120)
        assert backed.returncode == 0, backed.stderr
    finally:
        first.shutdown()
    manifest = json.loads(backed.stdout)
    assert manifest["schema_revisions"] and manifest["database"] == "sqlite"
    assert any(f["path"].startswith("blobs/") for f in manifest["files"]), manifest
    shutil.rmtree(first_dir)  # nothing of the first instance is left to lean on

    restored = wfray_cli({"WFRAY_DATA_DIR": str(second_dir)}, "restore", str(folder))
    assert restored.returncode == 0, restored.stderr
    store = SqlRunStore(f"sqlite:///{second_dir / 'wfray.db'}", create=False)
    try:
        held = store.find_runs([*order_ids, *quick_ids])
        unfinished = sorted(rid for rid, run in held.items() if not run.status.finished)
        assert set(order_ids) <= set(unfinished), "the orders were in flight at the backup"
        refs = [t.result_ref for t in store.get_tasks(order_ids) if t.result_ref]
        assert refs, "the orders' first results are blobs"
        new_root = f"file://{second_dir / 'blobs'}/"
        assert all(ref.startswith(new_root) for ref in refs), refs
    finally:
        store.close()

    second = start_wfray(second_dir, blob_threshold_bytes=BLOB_THRESHOLD)
    try:
        (gate / "open").touch()
        views = {v.run_id: v for v in second.wait(sorted(held), timeout=300)}
        assert {rid: views[rid].status for rid in held} == dict.fromkeys(held, RunStatus.COMPLETED)
        for number, run_id in enumerate(order_ids):
            result = second.decode(views[run_id], backup_flows.orders)
            assert result == f"{number}:20:order {number} line 19"
        store = SqlRunStore(second.settings.database_url, create=False)
        try:
            for run_id in unfinished:
                tasks = store.get_tasks([run_id])
                assert {t.status for t in tasks} == {TaskStatus.COMPLETED}, run_id
                succeeded = Counter(
                    (a.step, a.map_index)
                    for a in store.get_attempts(run_id)
                    if a.status is AttemptStatus.SUCCEEDED
                )
                assert set(succeeded.values()) == {1}, (run_id, succeeded)
                assert len(succeeded) == len(tasks), (run_id, succeeded)
        finally:
            store.close()
    finally:
        second.shutdown()


@pytest.fixture(scope="module")
def a_backup(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A backup of an instance that finished one order (its first result a blob)."""
    root = tmp_path_factory.mktemp("a_backup")
    (root / "gate").mkdir()
    (root / "gate" / "open").touch()
    source = start_wfray(root / "source", blob_threshold_bytes=BLOB_THRESHOLD)
    try:
        order = backup_flows.Order(number=7, gate=str(root / "gate"))
        assert (
            source.submit(backup_flows.orders, order).result(timeout=120) == "7:20:order 7 line 19"
        )
    finally:
        source.shutdown()
    folder = root / "backup"
    backed = wfray_cli({"WFRAY_DATA_DIR": str(root / "source")}, "backup", str(folder))
    assert backed.returncode == 0, backed.stderr
    return folder


@pytest.mark.parametrize("broken", ["no manifest", "checksum", "missing file", "outside", "junk"])
def test_restore_refuses_an_incomplete_or_corrupt_backup(
    a_backup: Path, tmp_path: Path, broken: str
) -> None:
    folder = tmp_path / "backup"
    shutil.copytree(a_backup, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    if broken == "no manifest":
        (folder / "manifest.json").unlink()
        said = "not a complete wfray backup"
    elif broken == "checksum":
        with (folder / "store.sqlite").open("r+b") as copy:
            copy.seek(200)
            copy.write(b"\xff")
        said = "corrupt: store.sqlite"
    elif broken == "missing file":
        blob = next(f["path"] for f in manifest["files"] if f["path"] != "store.sqlite")
        (folder / blob).unlink()
        said = "incomplete"
    elif broken == "outside":
        manifest["files"].append({"path": "../../etc/passwd", "size": 1, "sha256": "0"})
        (folder / "manifest.json").write_text(json.dumps(manifest))
        said = "a path outside it"
    else:
        (folder / "manifest.json").write_text("[1, 2")
        said = "cannot read"
    target = tmp_path / "target"
    refused = wfray_cli({"WFRAY_DATA_DIR": str(target)}, "restore", str(folder))
    assert refused.returncode == 1, refused.stderr
    assert said in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (target / "wfray.db").exists(), "nothing is restored from a bad backup"


def test_restore_into_a_store_in_use_needs_force(a_backup: Path, tmp_path: Path) -> None:
    env = {"WFRAY_DATA_DIR": str(tmp_path / "target")}
    assert wfray_cli(env, "restore", str(a_backup)).returncode == 0
    again = wfray_cli(env, "restore", str(a_backup))
    assert again.returncode == 1
    assert "is not empty (rows in " in again.stderr and "--force" in again.stderr
    forced = wfray_cli(env, "restore", str(a_backup), "--force")
    assert forced.returncode == 0, forced.stderr
    listed = wfray_cli(env, "runs", "--json")
    assert [r["workflow"] for r in json.loads(listed.stdout)] == ["backup_orders"]


def test_backup_to_a_folder_that_cannot_be_written_copies_nothing(
    a_backup: Path, tmp_path: Path
) -> None:
    source = {"WFRAY_DATA_DIR": str(a_backup.parent / "source")}
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    under_a_file = wfray_cli(source, "backup", str(blocker / "backup"))
    assert under_a_file.returncode == 1
    assert "cannot write the backup into" in under_a_file.stderr
    assert blocker.read_text() == "in the way"
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep").write_text("mine")
    refused = wfray_cli(source, "backup", str(busy))
    assert refused.returncode == 1
    assert "is not empty" in refused.stderr
    assert sorted(p.name for p in busy.iterdir()) == ["keep"]


def test_submit_wait_prints_the_result_as_json_and_the_status_on_stderr(
    ray_session: None, tmp_path: Path
) -> None:
    import ray

    data = tmp_path / "data"
    instance = start_wfray(data)
    try:
        env = {
            "WFRAY_DATA_DIR": str(data),
            "WFRAY_NAMESPACE": instance.settings.namespace,
            "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
            "COLUMNS": "80",
        }
        module = ("--module", "tests.fixtures.backup_flows")
        done = wfray_cli(env, "submit", "quick", "--input", '{"n": 21}', "--wait", *module)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == 42  # stdout: the result alone, as JSON
        run_id, said = done.stderr.strip().split(": ", 1)
        assert said == "completed" and len(run_id) == 32

        nasty = json.dumps({"message": "\x1b[2Jbad\nnews"})
        failed = wfray_cli(env, "submit", "hostile", "--input", nasty, "--wait", *module)
        assert failed.returncode == 1
        assert failed.stdout == ""  # no result to read
        assert ": failed" in failed.stderr and "\\x1b[2Jbad\\nnews" in failed.stderr
        assert "\x1b" not in failed.stderr

        # acting commands take a prefix too; cancelling a finished run says so, exit 0
        cancelled = wfray_cli(env, "cancel", run_id[:10], "--json")
        assert cancelled.returncode == 0, cancelled.stderr
        (answer,) = json.loads(cancelled.stdout)
        assert (answer["run_id"], answer["applied"]) == (run_id, False)
    finally:
        instance.shutdown()
