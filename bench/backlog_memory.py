"""The coordinator's memory stays flat whether 100 or 100,000 tasks are queued.

    python -m bench.backlog_memory [--json] [--sizes 100,10000,100000] [--store sqlite]

For each backlog size, a fresh wfray instance (own namespace, own data dir or database) on
one local Ray instance, with a small `memory_cap` (2,000 ready tasks held in memory), a
small io dispatch window (8) and one queue "slow" limited to 4 concurrent tasks. It submits
that many one-step runs of `bench_nap` (an io step sleeping 0.5 s) on queue "slow", in
`submit_many` calls of 5,000 (--chunk), does not wait for them, and reads:

    * the coordinator actor process's RSS (psutil, on the pid from `client.call(Pid())`)
      before submitting, right after, and after a short settle; and its peak RSS (VmHWM)
    * `client.stats()`: runs_in_memory, tasks_held (ready tasks in memory), queued
      (backlog), running_attempts

then shuts the instance down. The 10,000 column (default) separates the cost of the
submission batch size (5,000 per call, a transient) from the cost of the backlog size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import psutil

from bench._common import (
    log,
    mib,
    peak_rss,
    setup_logging,
    start_ray,
    stdout_to_stderr,
    wfray_instance,
)

MEMORY_CAP = 2_000
IO_WINDOW = 8
QUEUE = {"name": "slow", "concurrency": 4}
SUBMIT_CHUNK = 5_000
SETTLE_S = 3.0
NAP_S = 0.5  # 4 at a time: even the 100-run backlog is still queued when measured


def measure(size: int, store: str, chunk: int = SUBMIT_CHUNK) -> dict[str, Any]:
    from bench.workloads import bench_nap
    from wfray.application.client_commands import Pid

    with wfray_instance(
        store, memory_cap=MEMORY_CAP, io_window=IO_WINDOW, queues=[QUEUE]
    ) as client:
        process = psutil.Process(int(client.call(Pid())))
        client.register(bench_nap)
        rss_idle = process.memory_info().rss
        log.info("backlog %d: submitting", size)
        started = time.perf_counter()
        for first in range(0, size, chunk):
            count = min(chunk, size - first)
            client.submit_many(bench_nap, [{"seconds": NAP_S}] * count, queue="slow", chunk=chunk)
        submit_s = time.perf_counter() - started
        rss_after = process.memory_info().rss
        stats_after = client.stats()
        time.sleep(SETTLE_S)
        rss_settled = process.memory_info().rss
        stats = client.stats()
        peak = peak_rss(process.pid)
        log.info("backlog %d: submitted in %.1fs; stats %s", size, submit_s, stats)
    return {
        "runs_submitted": size,
        "submit_s": round(submit_s, 2),
        "submits_per_s": round(size / submit_s, 1),
        "rss_idle_mib": round(mib(rss_idle), 1),
        "rss_after_submit_mib": round(mib(rss_after), 1),
        "rss_settled_mib": round(mib(rss_settled), 1),
        "peak_rss_mib": None if peak is None else round(mib(peak), 1),
        "runs_in_memory_after_submit": stats_after["runs_in_memory"],
        "tasks_held_after_submit": stats_after["tasks_held"],
        "runs_in_memory": stats["runs_in_memory"],
        "tasks_held": stats["tasks_held"],
        "queued": stats["queued"],
        "running_attempts": stats["running_attempts"],
    }


ROWS = (
    ("runs submitted (queue 'slow')", "runs_submitted"),
    ("submit time s", "submit_s"),
    ("submissions/s", "submits_per_s"),
    ("coordinator RSS idle MiB", "rss_idle_mib"),
    ("RSS right after submit MiB", "rss_after_submit_mib"),
    (f"RSS after {SETTLE_S:.0f}s settle MiB", "rss_settled_mib"),
    ("peak RSS (VmHWM) MiB", "peak_rss_mib"),
    ("runs_in_memory after submit", "runs_in_memory_after_submit"),
    ("tasks_held after submit", "tasks_held_after_submit"),
    ("runs_in_memory after settle", "runs_in_memory"),
    ("tasks_held after settle", "tasks_held"),
    ("queued (backlog) after settle", "queued"),
    ("running_attempts after settle", "running_attempts"),
)


def table(results: dict[int, dict[str, Any]], store: str, chunk: int) -> str:
    width = 16
    header = f"{'':<34}" + "".join(f"{f'{size:,} queued':>{width}}" for size in results)
    lines = [header, "-" * len(header)]
    for label, key in ROWS:
        cells = "".join(f"{_fmt(results[size][key]):>{width}}" for size in results)
        lines.append(f"{label:<34}{cells}")
    lines.append("")
    lines.append(
        f"store {store}; memory_cap={MEMORY_CAP}, io_window={IO_WINDOW}, queue {QUEUE}; "
        f"step: io, sleeps {NAP_S} s; submitted {chunk:,} runs per submit_many call"
    )
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backlog_memory", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--sizes", default="100,10000,100000", help="backlog sizes, in order")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--chunk", type=int, default=SUBMIT_CHUNK, help="runs per submit_many call")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    def run() -> dict[int, dict[str, Any]]:
        import ray

        start_ray()
        try:
            return {size: measure(size, args.store, args.chunk) for size in sizes}
        finally:
            ray.shutdown()

    if args.json:
        with stdout_to_stderr():
            results = run()
        sys.stdout.write(json.dumps({str(k): v for k, v in results.items()}) + "\n")
    else:
        results = run()
        print(table(results, args.store, args.chunk))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
