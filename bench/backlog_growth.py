"""A backlog of N runs queued, then drained, at growing N: cost per run, coordinator memory.

    python -m bench.backlog_growth [--json] [--quick] [--million] [--sizes 10000,100000]

One process, one local Ray instance (2 CPUs). For each size N, in this order:

    * raw Ray: two gate tasks take both CPUs and wait for a file; N no-op tasks are
      submitted behind them (queueing); the file appears and the driver gets every result,
      5,000 refs at a time (draining);
    * wfray (SQLite, a fresh instance per size, so its coordinator's peak memory is that
      size's): two runs of `bench_gate` take both CPUs the same way; N one-step runs of
      `bench_noop` are submitted with `submit_many`, 5,000 per call (queueing); the gate
      opens and the driver waits for them, 5,000 run ids per `wait` (draining).

Per size and phase it prints the wall time per run (microseconds) of both, the wfray
coordinator's CPU time per run, its RSS once the backlog is queued and its peak RSS
(VmHWM), how many ready tasks it held in memory then (`tasks_held`, at most
WFRAY_MEMORY_CAP) and the CPU other processes used meanwhile. The design says the
backlog waits in the store, not in the coordinator: its memory must not grow with N.
`--quick` runs 1,000 and 5,000; `--million` adds 1,000,000 (about 22 minutes here on a
quiet machine, raw Ray included).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench._common import (
    ForeignLoad,
    cell,
    log,
    mib,
    peak_rss,
    setup_logging,
    start_ray,
    stdout_to_stderr,
    wfray_instance,
)

GATES = 2  # start_ray gives Ray 2 CPUs: both are held while the backlog queues
CHUNK = 5_000  # runs per submit_many call, run ids per wait call, refs per ray.get
PHASE_TIMEOUT_S = 6 * 3600.0
GATE_START_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True)
class Gate:
    """Files in a folder of its own: one per gate task, touched once it holds its CPU, and
    the gate, whose creation lets them all end."""

    folder: Path

    def started(self, index: int) -> str:
        return str(self.folder / f"started-{index}")

    @property
    def path(self) -> str:
        return str(self.folder / "open")

    def wait_until_held(self) -> None:
        deadline = time.monotonic() + GATE_START_TIMEOUT_S
        while not all(Path(self.started(i)).exists() for i in range(GATES)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gate tasks did not start in {GATE_START_TIMEOUT_S}s")
            time.sleep(0.05)

    def open(self) -> None:
        Path(self.path).touch()


@contextlib.contextmanager
def shut_gate() -> Iterator[Gate]:
    with tempfile.TemporaryDirectory(prefix="wfray-gate-") as folder:
        gate = Gate(Path(folder))
        try:
            yield gate
        finally:
            gate.open()  # whatever happened, the gate tasks end


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def per_run_us(seconds: float, size: int) -> float:
    return round(seconds / size * 1e6, 1)


def raw_ray(size: int) -> dict[str, Any]:
    import ray

    from bench.workloads import ray_gate, ray_noop

    me = psutil.Process()
    with shut_gate() as gate:
        gates = [ray_gate.remote(gate.started(i), gate.path) for i in range(GATES)]
        gate.wait_until_held()
        load = ForeignLoad()
        cpu_before, started = cpu_s(me), time.perf_counter()
        refs = [ray_noop.remote() for _ in range(size)]
        queued, cpu_queued = time.perf_counter(), cpu_s(me)
        queue_load = load.cores()
        load = ForeignLoad()
        gate.open()
        for first in range(0, size, CHUNK):
            ray.get(refs[first : first + CHUNK], timeout=PHASE_TIMEOUT_S)
        drained, cpu_drained = time.perf_counter(), cpu_s(me)
        ray.get(gates, timeout=PHASE_TIMEOUT_S)
    return {
        "queue_us_per_run": per_run_us(queued - started, size),
        "drain_us_per_run": per_run_us(drained - queued, size),
        "driver_cpu_queue_us_per_run": per_run_us(cpu_queued - cpu_before, size),
        "driver_cpu_drain_us_per_run": per_run_us(cpu_drained - cpu_queued, size),
        "others_cores_queue": round(queue_load, 2),
        "others_cores_drain": round(load.cores(), 2),
    }


def wfray_run(size: int) -> dict[str, Any]:
    from bench.workloads import bench_gate, bench_noop
    from wfray.application.client_commands import Pid

    # the default max_backlog (1,000,000 queued tasks) would refuse the last of a million
    with wfray_instance("sqlite", max_backlog=max(1_000_000, 2 * size)) as client:
        warm = client.submit_many(bench_noop, [None] * 10)  # workers import the workload
        client.wait([handle.run_id for handle in warm], timeout=PHASE_TIMEOUT_S)
        coordinator = psutil.Process(int(client.call(Pid())))
        with shut_gate() as gate:
            inputs = [{"started": gate.started(i), "gate": gate.path} for i in range(GATES)]
            gates = [h.run_id for h in client.submit_many(bench_gate, inputs)]
            gate.wait_until_held()
            rss_idle = coordinator.memory_info().rss
            load = ForeignLoad()
            cpu_before, started = cpu_s(coordinator), time.perf_counter()
            run_ids: list[str] = []
            for first in range(0, size, CHUNK):
                count = min(CHUNK, size - first)
                handles = client.submit_many(bench_noop, [None] * count, chunk=CHUNK)
                run_ids.extend(handle.run_id for handle in handles)
            queued, cpu_queued = time.perf_counter(), cpu_s(coordinator)
            queue_load = load.cores()
            rss_queued = coordinator.memory_info().rss
            stats = client.stats()
            log.info("wfray, %d runs queued in %.1fs; stats %s", size, queued - started, stats)
            load = ForeignLoad()
            gate.open()
            for first in range(0, size, CHUNK):
                waited = client.wait(run_ids[first : first + CHUNK], timeout=PHASE_TIMEOUT_S)
                unfinished = [v for v in waited if v.status.value != "completed"]
                assert len(waited) == min(CHUNK, size - first) and not unfinished, unfinished[:3]
            drained, cpu_drained = time.perf_counter(), cpu_s(coordinator)
            drain_load = load.cores()
            peak = peak_rss(coordinator.pid)
            client.wait(gates, timeout=PHASE_TIMEOUT_S)
    log.info("wfray, %d runs drained in %.1fs", size, drained - queued)
    return {
        "queue_us_per_run": per_run_us(queued - started, size),
        "drain_us_per_run": per_run_us(drained - queued, size),
        "coordinator_cpu_queue_us_per_run": per_run_us(cpu_queued - cpu_before, size),
        "coordinator_cpu_drain_us_per_run": per_run_us(cpu_drained - cpu_queued, size),
        "coordinator_rss_idle_mib": round(mib(rss_idle), 1),
        "coordinator_rss_queued_mib": round(mib(rss_queued), 1),
        "coordinator_peak_rss_mib": None if peak is None else round(mib(peak), 1),
        "tasks_held_queued": stats["tasks_held"],
        "backlog_queued": stats["queued"],
        "others_cores_queue": round(queue_load, 2),
        "others_cores_drain": round(drain_load, 2),
    }


def measure(sizes: Sequence[int]) -> dict[int, dict[str, Any]]:
    import ray

    start_ray()
    try:
        raw_ray(100)  # warm up: Ray's workers start and import the workloads
        results = {}
        for size in sizes:
            raw = raw_ray(size)
            log.info("raw Ray, %d tasks: %s", size, raw)
            ours = wfray_run(size)
            log.info("wfray, %d runs: %s", size, ours)
            results[size] = {"raw_ray": raw, "wfray_sqlite": ours}
        return results
    finally:
        ray.shutdown()


ROWS = (
    ("raw Ray: queue us per task", "raw_ray", "queue_us_per_run"),
    ("raw Ray: drain us per task", "raw_ray", "drain_us_per_run"),
    ("raw Ray: driver CPU us per task, queue", "raw_ray", "driver_cpu_queue_us_per_run"),
    ("raw Ray: driver CPU us per task, drain", "raw_ray", "driver_cpu_drain_us_per_run"),
    ("wfray: queue us per run", "wfray_sqlite", "queue_us_per_run"),
    ("wfray: drain us per run", "wfray_sqlite", "drain_us_per_run"),
    ("wfray: coordinator CPU us/run, queue", "wfray_sqlite", "coordinator_cpu_queue_us_per_run"),
    ("wfray: coordinator CPU us/run, drain", "wfray_sqlite", "coordinator_cpu_drain_us_per_run"),
    ("wfray: coordinator RSS idle MiB", "wfray_sqlite", "coordinator_rss_idle_mib"),
    ("wfray: coordinator RSS queued MiB", "wfray_sqlite", "coordinator_rss_queued_mib"),
    ("wfray: coordinator peak RSS MiB", "wfray_sqlite", "coordinator_peak_rss_mib"),
    ("wfray: tasks held in memory, queued", "wfray_sqlite", "tasks_held_queued"),
    ("wfray: backlog (queued), queued", "wfray_sqlite", "backlog_queued"),
    ("host: others' cores (raw Ray, queue)", "raw_ray", "others_cores_queue"),
    ("host: others' cores (raw Ray, drain)", "raw_ray", "others_cores_drain"),
    ("host: others' cores (wfray, queue)", "wfray_sqlite", "others_cores_queue"),
    ("host: others' cores (wfray, drain)", "wfray_sqlite", "others_cores_drain"),
)


def table(results: dict[int, dict[str, Any]]) -> str:
    width = 14
    header = f"{'':<40}" + "".join(f"{f'{size:,} runs':>{width}}" for size in results)
    lines = [header, "-" * len(header)]
    for label, system, key in ROWS:
        cells = "".join(f"{cell(results[size][system][key]):>{width}}" for size in results)
        lines.append(f"{label:<40}{cells}")
    lines.append("")
    lines.append(
        f"one-step no-op runs queued behind {GATES} gate tasks holding both CPUs, then drained; "
        f"{CHUNK:,} per submit_many / wait call; wfray on SQLite (fsync on every commit), "
        "a fresh instance per size"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backlog_growth", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--quick", action="store_true", help="1,000 and 5,000 runs only")
    parser.add_argument("--million", action="store_true", help="add 1,000,000 runs (long)")
    parser.add_argument("--sizes", default=None, help="backlog sizes, in order (overrides)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    else:
        sizes = [1_000, 5_000] if args.quick else [10_000, 100_000]
        if args.million:
            sizes.append(1_000_000)
    if args.json:
        with stdout_to_stderr():
            results = measure(sizes)
        sys.stdout.write(json.dumps({str(k): v for k, v in results.items()}) + "\n")
    else:
        print(table(measure(sizes)))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
