"""Where wfray spends its time under W1: py-spy on the coordinator (and executor) actors.

    python -m bench.profile_w1 [--store sqlite|postgres] [--duration 15] [--runs 2000]
                               [--idle] [--gil] [--out DIR] [--json]

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

`--json` prints a summary as one JSON object instead (store, mode, duration_s, rate, raw_dir,
w1: steps/seconds/steps_per_s, cores per kind of process, others_cores, samples per target);
the folded stacks stay in py-spy's raw files.
"""

from __future__ import annotations

import argparse
import collections
import json
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
from dataclasses import dataclass, field
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
    stdout_to_stderr,
    tree_cpu_s,
    wfray_instance,
)

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*)\)$")
ENTRY_POINTS = (
    ("store commit (SqlRunStore.commit)", "commit", "writer.py"),
    ("store find_runs", "find_runs", "reader.py"),
    ("coordinator loop turn (_turn)", "_turn", "coordinator.py"),
    ("intake.take (submissions)", "take", "intake.py"),
    ("apply outcomes (OutcomeApplier.apply)", "apply", "outcomes.py"),
    ("dispatch decisions (Dispatcher.dispatch)", "dispatch", "dispatcher.py"),
    ("launch attempts (Launcher.launch)", "launch", "dispatcher.py"),
    ("settle/evict (_settle)", "_settle", "coordinator.py"),
    ("page in (Dispatcher.page_in)", "page_in", "dispatcher.py"),
    ("coordinator.wait", "wait", "waiting.py"),
    ("coordinator.views", "views", "waiting.py"),
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


def cores_by_label(
    before: dict[int, float], after: dict[int, float], known: dict[int, str], elapsed: float
) -> dict[str, float]:
    """Cores each kind of process used while sampled, busiest first (under 0.005 left out)."""
    by_label: dict[str, float] = collections.defaultdict(float)
    for pid, used in after.items():
        by_label[label(pid, known)] += used - before.get(pid, 0.0)
    shown = {name: used / elapsed for name, used in by_label.items() if used / elapsed >= 0.005}
    shown = dict(sorted(shown.items(), key=lambda item: -item[1]))
    shown["total"] = sum(by_label.values()) / elapsed
    return shown


def cpu_breakdown(cores: dict[str, float], elapsed: float) -> str:
    lines = [f"-- CPU of the whole Ray instance while sampled ({elapsed:.1f}s wall, 2 cores)"]
    lines.extend(f"{used:6.2f} cores  {name}" for name, used in cores.items())
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


@dataclass
class Profiled:
    """What one profiling session measured; py-spy's raw files are in `out`."""

    steps: int = 0
    seconds: float = float("nan")
    elapsed: float = float("nan")
    cores: dict[str, float] = field(default_factory=dict)
    others_cores: float = float("nan")

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds else float("nan")


def spy_command(args: argparse.Namespace, pid: int, output: Path) -> list[str]:
    command = [py_spy(), "record", "--pid", str(pid), "--duration", str(args.duration)]
    command += ["--rate", str(args.rate), "--format", "raw", "--nolineno", "--threads"]
    command += ["--nonblocking", "--output", str(output)]
    if args.idle:
        command.append("--idle")
    if args.gil:
        command.append("--gil")
    return command


def profile(client: Any, args: argparse.Namespace, out: Path) -> Profiled:
    """Warm up, attach py-spy to the actors and task workers, keep W1 going while it samples."""
    from bench.workloads import bench_noop

    ids = [uuid.uuid4().hex for _ in range(100)]
    client.submit_many(bench_noop, [None] * 100, run_ids=ids)
    client.wait(ids, timeout=120)
    pids = actor_pids(client)
    targets = {"coordinator": [pids["coordinator"]], "executor-cpu": [pids["executor-cpu"]]}
    targets["task workers"] = task_workers(set(pids.values()))
    log.info("actor pids: %s; task workers: %s", pids, targets["task workers"])
    spies = [
        subprocess.Popen(
            spy_command(args, pid, out / f"{target.replace(' ', '_')}-{pid}.txt"),
            stdout=subprocess.DEVNULL,
            stderr=sys.stderr,
        )
        for target, target_pids in targets.items()
        for pid in target_pids
    ]
    time.sleep(1.0)  # py-spy attaches
    known = {pid: name for name, pid in pids.items()}
    known[psutil.Process().pid] = "driver (this benchmark, client + waits)"
    backends = postgres_backend_pids(client.settings.database_url)
    known.update({pid: "PostgreSQL backends of its database" for pid in backends})
    known.update({spy.pid: "py-spy" for spy in spies})
    before = tree_cpu_s(backends)
    foreign = ForeignLoad(lambda: backends)
    began = time.perf_counter()
    stop = threading.Event()
    box: dict[str, tuple[int, float]] = {}
    worker = threading.Thread(
        target=lambda: box.setdefault("w1", keep_w1_running(client, args.runs, stop))
    )
    worker.start()
    for spy in spies:
        spy.wait(timeout=args.duration + 120)
    elapsed = time.perf_counter() - began
    result = Profiled(elapsed=elapsed, others_cores=foreign.cores())
    result.cores = cores_by_label(before, tree_cpu_s(backends), known, elapsed)
    stop.set()
    worker.join(timeout=600)
    result.steps, result.seconds = box.get("w1", (0, float("nan")))
    return result


TARGETS = ("coordinator", "executor-cpu", "task workers")


def target_stacks(out: Path, target: str) -> list[tuple[list[str], int]]:
    paths = sorted(out.glob(f"{target.replace(' ', '_')}-*.txt"))
    return [stack for path in paths for stack in parse_raw(path)]


def as_json(args: argparse.Namespace, mode: str, out: Path, result: Profiled) -> str:
    samples = {t: sum(n for _, n in target_stacks(out, t)) for t in TARGETS}
    return json.dumps(
        {
            "store": args.store,
            "mode": mode,
            "duration_s": args.duration,
            "rate": args.rate,
            "raw_dir": str(out),
            "w1": {
                "steps": result.steps,
                "seconds": round(result.seconds, 3),
                "steps_per_s": round(result.steps_per_s, 1),
            },
            "cores": {name: round(used, 3) for name, used in result.cores.items()},
            "others_cores": round(result.others_cores, 3),
            "samples": samples,
        }
    )


def as_text(args: argparse.Namespace, mode: str, out: Path, result: Profiled) -> str:
    lines = [
        f"store {args.store}, {mode} samples, {args.duration}s at {args.rate}/s; raw: {out}",
        f"W1 under py-spy: {result.steps} steps in {result.seconds:.1f}s = "
        f"{result.steps_per_s:.1f} steps/s",
        cpu_breakdown(result.cores, result.elapsed),
        f"other processes on the host (not this benchmark): {result.others_cores:.2f} cores",
    ]
    for target in TARGETS:
        stacks = target_stacks(out, target)
        lines.append(
            report(target, stacks, args.top) if stacks else f"== {target}: no py-spy output"
        )
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
    parser.add_argument("--json", action="store_true", help="print one JSON summary only")
    args = parser.parse_args(argv)
    setup_logging()
    py_spy()  # before Ray starts: without py-spy there is nothing to measure
    out = Path(args.out or tempfile.mkdtemp(prefix="wfray-profile-"))
    out.mkdir(parents=True, exist_ok=True)

    import ray

    with stdout_to_stderr():
        start_ray()
        try:
            with wfray_instance(args.store) as client:
                result = profile(client, args, out)
        finally:
            ray.shutdown()
    mode = "wall (--idle)" if args.idle else ("GIL holder" if args.gil else "on-CPU")
    print((as_json if args.json else as_text)(args, mode, out, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
