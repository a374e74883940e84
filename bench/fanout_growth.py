"""One run fanning out over N items and collecting them, at growing N: cost per item.

    python -m bench.fanout_growth [--json] [--quick] [--million] [--sizes 1000,10000,100000]
                                  [--threshold BYTES]

One process, one local Ray instance (2 CPUs, io=4). For each size N, in this order:

    * raw Ray: a task returns list(range(N)); the driver takes the list and starts one task
      per item (each returns its item), at most 10,000 pending at once (ray.wait); one task
      per 10,000 results sums them (passed as refs), and one task sums those sums;
    * wfray (SQLite, a fresh instance per size, so its coordinator's peak memory is that
      size's): one run of `bench_fanout`: `fan_source` returns list(range(N)), `fan_item`
      maps over it (one task execution per item, each receiving its item), `fan_sum`
      collects the N results.

All steps are no-ops on cpu workers; wall time is from the submit to the result. Per size it
prints the cost per item (wall time / N, microseconds) of both and their ratio, the wfray
coordinator's CPU time per item and its peak RSS (VmHWM), and the CPU other processes used
meanwhile (figures taken while others used more than ~0.2 cores are disturbed). Cost per item
that grows with N is the bug this measures (issue 18: a list over the blob threshold,
WFRAY_BLOB_THRESHOLD_BYTES, 256 KB by default, about 45,000 integers, was read whole by every
item; and past the memory cap, WFRAY_MEMORY_CAP, the coordinator held every item of the
fan-out: now it is paged, see wfray/application/fanout.py). `--quick` runs 1,000 and 10,000
only; `--million` adds 1,000,000 (long: an hour on a loaded 2-core machine, raw Ray included).
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
    GET_TIMEOUT_S,
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

RUN_TIMEOUT_S = 6 * 3600.0
RAW_WINDOW = 10_000  # raw Ray's tasks pending at once (wfray's WFRAY_MEMORY_CAP by default)


def raw_ray(size: int) -> dict[str, Any]:
    import ray

    from bench.workloads import ray_fan_item, ray_fan_source, ray_fan_sum

    load = ForeignLoad()
    started = time.perf_counter()
    driver_cpu = psutil.Process().cpu_times()
    items = ray.get(ray_fan_source.remote(size), timeout=GET_TIMEOUT_S)
    # at most RAW_WINDOW tasks pending, as Ray's docs advise for many tasks (and as wfray holds
    # at most its memory cap): a million at once ran this 24 GB machine out of memory
    done: list[Any] = []
    pending: list[Any] = []
    for item in items:
        if len(pending) >= RAW_WINDOW:
            ready, pending = ray.wait(pending, num_returns=RAW_WINDOW // 10, timeout=RUN_TIMEOUT_S)
            done.extend(ready)
        pending.append(ray_fan_item.remote(item))
    done.extend(pending)
    # the fan-in: one task per slice of RAW_WINDOW results, then one over their sums
    partial = [
        ray_fan_sum.remote(done[start : start + RAW_WINDOW])
        for start in range(0, len(done), RAW_WINDOW)
    ]
    total = ray.get(ray_fan_sum.remote(partial), timeout=RUN_TIMEOUT_S)
    wall = time.perf_counter() - started
    after = psutil.Process().cpu_times()
    assert total == size * (size - 1) // 2, total
    cpu = (after.user + after.system) - (driver_cpu.user + driver_cpu.system)
    return {
        "wall_s": round(wall, 3),
        "us_per_item": round(wall / size * 1e6, 1),
        "driver_cpu_us_per_item": round(cpu / size * 1e6, 1),
        "others_cores": round(load.cores(), 2),
    }


def wfray_run(size: int, **overrides: Any) -> dict[str, Any]:
    from bench.workloads import bench_fanout
    from wfray.application.client_commands import Pid

    with wfray_instance("sqlite", **overrides) as client:
        client.submit(bench_fanout, {"count": 2}).result(timeout=GET_TIMEOUT_S)  # warm up
        coordinator = psutil.Process(int(client.call(Pid())))
        cpu_before = coordinator.cpu_times()
        load = ForeignLoad()
        started = time.perf_counter()
        total = client.submit(bench_fanout, {"count": size}).result(timeout=RUN_TIMEOUT_S)
        wall = time.perf_counter() - started
        cpu_after = coordinator.cpu_times()
        peak = peak_rss(coordinator.pid)
        assert total == size * (size - 1) // 2, total
    cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    log.info("wfray, %d items: %.1fs", size, wall)
    return {
        "wall_s": round(wall, 3),
        "us_per_item": round(wall / size * 1e6, 1),
        "coordinator_cpu_us_per_item": round(cpu / size * 1e6, 1),
        "coordinator_peak_rss_mib": None if peak is None else round(mib(peak), 1),
        "others_cores": round(load.cores(), 2),
    }


def measure(sizes: Sequence[int], **overrides: Any) -> dict[int, dict[str, Any]]:
    import ray

    start_ray()
    try:
        raw_ray(100)  # warm up: Ray's workers start and import the workloads
        results = {}
        for size in sizes:
            raw = raw_ray(size)
            log.info("raw Ray, %d items: %.1fs", size, raw["wall_s"])
            ours = wfray_run(size, **overrides)
            ratio = ours["us_per_item"] / raw["us_per_item"]
            results[size] = {"raw_ray": raw, "wfray_sqlite": ours, "cost_ratio": round(ratio, 2)}
        return results
    finally:
        ray.shutdown()


ROWS = (
    ("raw Ray: us per item", "raw_ray", "us_per_item"),
    ("raw Ray: driver CPU us per item", "raw_ray", "driver_cpu_us_per_item"),
    ("wfray: us per item", "wfray_sqlite", "us_per_item"),
    ("wfray: coordinator CPU us per item", "wfray_sqlite", "coordinator_cpu_us_per_item"),
    ("wfray: coordinator peak RSS MiB", "wfray_sqlite", "coordinator_peak_rss_mib"),
    ("wfray: wall s", "wfray_sqlite", "wall_s"),
    ("cost ratio wfray/raw Ray", None, "cost_ratio"),
    ("host: others' cores (raw Ray)", "raw_ray", "others_cores"),
    ("host: others' cores (wfray)", "wfray_sqlite", "others_cores"),
)


def table(results: dict[int, dict[str, Any]]) -> str:
    width = 16
    header = f"{'':<38}" + "".join(f"{f'{size:,} items':>{width}}" for size in results)
    lines = [header, "-" * len(header)]
    for label, system, key in ROWS:
        cells = ""
        for size in results:
            value = results[size][key] if system is None else results[size][system][key]
            cells += f"{cell(value):>{width}}"
        lines.append(f"{label:<38}{cells}")
    lines.append("")
    lines.append(
        "one run per size: a list of N integers, one no-op item per element, a sum of the N "
        "results; wfray on SQLite (fsync on every commit), a fresh instance per size"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout_growth", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 items only")
    parser.add_argument("--million", action="store_true", help="add 1,000,000 items (long)")
    parser.add_argument("--sizes", default=None, help="fan-out sizes, in order (overrides)")
    parser.add_argument(
        "--threshold", type=int, default=None, help="WFRAY_BLOB_THRESHOLD_BYTES for wfray"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    else:
        sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
        if args.million:
            sizes.append(1_000_000)
    overrides = {} if args.threshold is None else {"blob_threshold_bytes": args.threshold}
    if args.json:
        with stdout_to_stderr():
            results = measure(sizes, **overrides)
        sys.stdout.write(json.dumps({str(k): v for k, v in results.items()}) + "\n")
    else:
        print(table(measure(sizes, **overrides)))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
