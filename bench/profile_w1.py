"""Where wfray spends its time under W1: py-spy on the coordinator (and executor) actors.

    python -m bench.profile_w1 [--store sqlite|postgres] [--duration 15] [--idle] [--gil]

Starts one local Ray instance and one wfray instance (as bench.throughput does), warms it
up, attaches `py-spy record --format raw --nonblocking` to the coordinator actor and to the
cpu executor actor, and keeps W1 going (batches of one-step no-op runs submitted with
`submit_many`, then awaited) for as long as py-spy samples. Then it folds the stacks into:

    * samples per thread kind (event loop, to_thread workers running store calls, others)
    * self time per function (the leaf frame) and inclusive time per function
    * inclusive time of a few wfray entry points (store commit, engine, dispatch, ...)

Without --idle, py-spy keeps only samples of threads that were running on a CPU (a thread
waiting in fsync or on a socket is idle); with --idle, every sample counts (wall time).
--gil keeps only samples of the thread holding the GIL (pure Python CPU).
"""

from __future__ import annotations

import argparse
import collections
import math
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from bench._common import (
    ForeignLoad,
    actor_pids,
    log,
    postgres_backend_pids,
    setup_logging,
    start_ray,
    tree_cpu_s,
    wfray_instance,
)

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*)\)$")
ENTRY_POINTS = (
    ("store commit (SqlRunStore.commit)", "commit", "writer.py"),
    ("store find_runs", "find_runs", "reader.py"),
    ("coordinator loop turn (_turn)", "_turn", "coordinator.py"),
    ("intake.take (submissions)", "take", "intake.py"),
    ("apply outcomes (_apply_outcome)", "_apply_outcome", "coordinator.py"),
    ("dispatch decisions (_dispatch)", "_dispatch", "coordinator.py"),
    ("settle/evict (_settle)", "_settle", "coordinator.py"),
    ("page in (_page_in)", "_page_in", "coordinator.py"),
    ("coordinator.wait", "wait", "coordinator.py"),
    ("coordinator.views", "views", "coordinator.py"),
    ("reconciler send (_send)", "_send", "reconciler.py"),
    ("reconciler drain (_drain)", "_drain", "reconciler.py"),
    ("Ray library code (ray/*: actor calls, serialisation)", None, "ray/"),
    ("sqlalchemy (any)", None, "sqlalchemy/"),
    ("pydantic (any)", None, "pydantic"),
)


def task_workers(actors: set[int]) -> list[int]:
    """Ray worker processes of this instance that run tasks (not wfray's actors)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            title = proc.cmdline()[0]
        except (psutil.NoSuchProcess, psutil.AccessDenied, IndexError):
            continue
        if proc.pid not in actors and (title == "ray::IDLE" or title.startswith("ray::wfray:")):
            found.append(proc.pid)
    return found


def label(pid: int, known: dict[int, str]) -> str:
    if pid in known:
        return known[pid]
    try:
        title = psutil.Process(pid).cmdline()[0]
    except (psutil.NoSuchProcess, psutil.AccessDenied, IndexError):
        return "exited processes"
    if title.startswith("ray::"):
        return "Ray task workers (run_cpu_attempt)"
    return Path(title.split()[0]).name


def cpu_breakdown(
    before: dict[int, float], after: dict[int, float], known: dict[int, str], elapsed: float
) -> str:
    by_label: dict[str, float] = collections.defaultdict(float)
    for pid, used in after.items():
        by_label[label(pid, known)] += used - before.get(pid, 0.0)
    lines = [f"-- CPU of the whole Ray instance while sampled ({elapsed:.1f}s wall, 2 cores)"]
    for name, used in sorted(by_label.items(), key=lambda item: -item[1]):
        if used / elapsed >= 0.005:
            lines.append(f"{used / elapsed:6.2f} cores  {name}")
    lines.append(f"{sum(by_label.values()) / elapsed:6.2f} cores  total")
    return "\n".join(lines)


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy not found: pip install py-spy into the venv")
    return found


def keep_w1_running(client: Any, runs: int, stop: threading.Event) -> tuple[int, float]:
    """Submit-and-wait batches of `runs` no-op runs until `stop`; returns (steps, seconds)."""
    from bench.workloads import bench_noop

    steps = 0
    started = time.perf_counter()
    while not stop.is_set():
        ids = [uuid.uuid4().hex for _ in range(runs)]
        client.submit_many(bench_noop, [None] * runs, run_ids=ids)
        size = math.ceil(runs / 20)
        for first in range(0, runs, size):
            client.wait(ids[first : first + size], timeout=600)
        steps += runs
    return steps, time.perf_counter() - started


def parse_raw(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def thread_kind(name: str, frames: list[str]) -> str:
    if any(f.startswith("_worker (concurrent/futures/thread.py)") for f in frames):
        return "to_thread workers (store calls)"
    if name.startswith("AsyncIO Thread"):
        return "asyncio event loop (wfray logic, Ray call plumbing)"
    if name == "MainThread":
        return "main thread (Ray core-worker loop, in C++)"
    return f"other thread ({name})"


def matches(frame: str, func: str | None, file_part: str) -> bool:
    match = FRAME.match(frame)
    if not match:
        return False
    file = match["file"]
    if not (file.startswith(file_part) if file_part.endswith("/") else file_part in file):
        return False
    return func is None or match["func"] == func or match["func"].endswith("." + func)


def short(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    return f"{match['func']} ({match['file']})"


def report(name: str, stacks: list[tuple[list[str], int]], top: int) -> str:
    total = sum(count for _, count in stacks)
    lines = [f"== {name}: {total} samples (all threads)"]
    if not total:
        return "\n".join(lines)
    kinds: collections.Counter[str] = collections.Counter()
    selfs: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        name = frames[0].partition(": ")[2] if frames and frames[0].startswith("thread (") else ""
        body = [f for f in frames if not f.startswith("thread (")]
        kinds[thread_kind(name, body)] += count
        if body:
            selfs[short(body[-1])] += count
        for frame in set(map(short, body)):
            inclusive[frame] += count
    lines.append("-- samples by thread kind")
    for kind, count in kinds.most_common():
        lines.append(f"{100 * count / total:6.1f}%  {kind}")
    lines.append(f"-- self time, top {top} functions (leaf frame)")
    for frame, count in selfs.most_common(top):
        lines.append(f"{100 * count / total:6.1f}%  {frame}")
    lines.append(f"-- inclusive time, top {top} functions")
    for frame, count in inclusive.most_common(top):
        lines.append(f"{100 * count / total:6.1f}%  {frame}")
    lines.append("-- inclusive time of wfray entry points and libraries")
    for label, func, file_part in ENTRY_POINTS:
        count = sum(n for frames, n in stacks if any(matches(f, func, file_part) for f in frames))
        lines.append(f"{100 * count / total:6.1f}%  {label}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_w1", description=__doc__)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--duration", type=int, default=15, help="seconds py-spy samples")
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--runs", type=int, default=2000, help="runs per W1 batch")
    parser.add_argument("--idle", action="store_true", help="count idle threads (wall time)")
    parser.add_argument("--gil", action="store_true", help="only the thread holding the GIL")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", help="folder for py-spy's raw files (default: a temp dir)")
    args = parser.parse_args(argv)
    setup_logging()
    out = Path(args.out or tempfile.mkdtemp(prefix="wfray-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    summary_lines: list[str] = []

    import ray

    from bench.workloads import bench_noop

    start_ray()
    try:
        with wfray_instance(args.store) as client:
            ids = [uuid.uuid4().hex for _ in range(100)]
            client.submit_many(bench_noop, [None] * 100, run_ids=ids)
            client.wait(ids, timeout=120)
            pids = actor_pids(client)
            targets = {"coordinator": [pids["coordinator"]], "executor-cpu": [pids["executor-cpu"]]}
            targets["task workers"] = task_workers(set(pids.values()))
            log.info("actor pids: %s; task workers: %s", pids, targets["task workers"])
            spies: dict[tuple[str, int], subprocess.Popen[bytes]] = {}
            for target, pid in [(t, p) for t, ps in targets.items() for p in ps]:
                command = [
                    py_spy(),
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(args.duration),
                    "--rate",
                    str(args.rate),
                    "--format",
                    "raw",
                    "--nolineno",
                    "--threads",
                    "--nonblocking",
                    "--output",
                    str(out / f"{target.replace(' ', '_')}-{pid}.txt"),
                ]
                if args.idle:
                    command.append("--idle")
                if args.gil:
                    command.append("--gil")
                spies[(target, pid)] = subprocess.Popen(
                    command, stdout=subprocess.DEVNULL, stderr=sys.stderr
                )
            time.sleep(1.0)  # py-spy attaches
            known = {pid: name for name, pid in pids.items()}
            known[psutil.Process().pid] = "driver (this benchmark, client + waits)"
            backends = postgres_backend_pids(client.settings.database_url)
            known.update({pid: "PostgreSQL backends of its database" for pid in backends})
            before = tree_cpu_s(backends)
            foreign = ForeignLoad(lambda: backends)
            began = time.perf_counter()
            stop = threading.Event()
            box: dict[str, tuple[int, float]] = {}
            worker = threading.Thread(
                target=lambda: box.setdefault("w1", keep_w1_running(client, args.runs, stop))
            )
            worker.start()
            for spy in spies.values():
                spy.wait(timeout=args.duration + 120)
            elapsed = time.perf_counter() - began
            after = tree_cpu_s(backends)
            for name in ("py-spy",):
                known.update({spy.pid: name for spy in spies.values()})
            summary_lines.append(cpu_breakdown(before, after, known, elapsed))
            summary_lines.append(
                f"other processes on the host (not this benchmark): {foreign.cores():.2f} cores"
            )
            stop.set()
            worker.join(timeout=600)
            steps, seconds = box.get("w1", (0, float("nan")))
            summary_lines.insert(
                0,
                f"W1 under py-spy: {steps} steps in {seconds:.1f}s = "
                f"{steps / seconds if seconds else float('nan'):.1f} steps/s",
            )
    finally:
        ray.shutdown()
    mode = "wall (--idle)" if args.idle else ("GIL holder" if args.gil else "on-CPU")
    print(f"store {args.store}, {mode} samples, {args.duration}s at {args.rate}/s; raw: {out}")
    print("\n".join(summary_lines))
    for target in ("coordinator", "executor-cpu", "task workers"):
        paths = sorted(out.glob(f"{target.replace(' ', '_')}-*.txt"))
        if paths:
            print(report(target, [s for path in paths for s in parse_raw(path)], args.top))
        else:
            print(f"== {target}: no py-spy output")
    return 0


if __name__ == "__main__":
    sys.exit(main())
