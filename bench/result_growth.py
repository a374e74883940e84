"""Results of growing size passed between two steps: cost per MB, coordinator memory.

    python -m bench.result_growth [--sizes 1000,1000000,100000000] [--json]

One process, one local Ray instance (2 CPUs). For each size S (bytes of a JSON string):

    * raw Ray: a task returns a string of S characters; a second task takes its ref and
      returns its length;
    * wfray (SQLite, a fresh instance per size): one run of `bench_result`: `make_result`
      returns the string, `measure_result` receives it as its argument and returns its
      length. Past WFRAY_BLOB_THRESHOLD_BYTES (256 KB) the result goes to the blob store,
      written by the worker and read by the next step's worker: the coordinator holds a
      reference, never the bytes.

Per size: wall time of both, the cost per MB, their ratio, and the wfray coordinator's
CPU time and peak RSS (VmHWM): a flat coordinator peak across sizes is what the design
says (a 100 MB result never passes through the coordinator). `--json` prints one object.
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
    log,
    mib,
    peak_rss,
    setup_logging,
    start_ray,
    stdout_to_stderr,
    wfray_instance,
)

MB = 1_000_000


def raw_ray(size: int) -> dict[str, Any]:
    import ray

    from bench.workloads import ray_make_result, ray_measure_result

    started = time.perf_counter()
    length = ray.get(ray_measure_result.remote(ray_make_result.remote(size)), timeout=600)
    wall = time.perf_counter() - started
    assert length == size, length
    return {"wall_ms": round(wall * 1e3, 2), "ms_per_mb": round(wall * 1e3 / (size / MB), 3)}


def wfray_run(size: int) -> dict[str, Any]:
    from bench.workloads import bench_result
    from wfray.application.client_commands import Pid

    with wfray_instance("sqlite") as client:
        client.submit(bench_result, {"size": 10}).result(timeout=GET_TIMEOUT_S)  # warm up
        coordinator = psutil.Process(int(client.call(Pid())))
        cpu_before = coordinator.cpu_times()
        started = time.perf_counter()
        length = client.submit(bench_result, {"size": size}).result(timeout=600)
        wall = time.perf_counter() - started
        cpu_after = coordinator.cpu_times()
        peak = peak_rss(coordinator.pid)
    assert length == size, length
    cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    return {
        "wall_ms": round(wall * 1e3, 2),
        "ms_per_mb": round(wall * 1e3 / (size / MB), 3),
        "coordinator_cpu_ms": round(cpu * 1e3, 1),
        "coordinator_peak_rss_mib": None if peak is None else round(mib(peak), 1),
    }


def measure(sizes: Sequence[int]) -> dict[int, dict[str, Any]]:
    import ray

    start_ray(settle_s=10.0)
    try:
        raw_ray(1000)  # warm up: Ray's workers start and import the workloads
        results = {}
        for size in sizes:
            raw = raw_ray(size)
            ours = wfray_run(size)
            log.info(
                "%d bytes: raw Ray %.1f ms, wfray %.1f ms", size, raw["wall_ms"], ours["wall_ms"]
            )
            ratio = ours["wall_ms"] / raw["wall_ms"]
            results[size] = {"raw_ray": raw, "wfray_sqlite": ours, "cost_ratio": round(ratio, 2)}
        return results
    finally:
        ray.shutdown()


def table(results: dict[int, dict[str, Any]]) -> str:
    rows = (
        ("raw Ray: wall ms", "raw_ray", "wall_ms"),
        ("raw Ray: ms per MB", "raw_ray", "ms_per_mb"),
        ("wfray: wall ms", "wfray_sqlite", "wall_ms"),
        ("wfray: ms per MB", "wfray_sqlite", "ms_per_mb"),
        ("wfray: coordinator CPU ms", "wfray_sqlite", "coordinator_cpu_ms"),
        ("wfray: coordinator peak RSS MiB", "wfray_sqlite", "coordinator_peak_rss_mib"),
        ("cost ratio wfray/raw Ray", None, "cost_ratio"),
    )
    width = 16
    header = f"{'':<34}" + "".join(f"{f'{size:,} B':>{width}}" for size in results)
    lines = [header, "-" * len(header)]
    for label, system, key in rows:
        cells = ""
        for size in results:
            value = results[size][key] if system is None else results[size][system][key]
            cells += f"{'-' if value is None else value:>{width}}"
        lines.append(f"{label:<34}{cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.result_growth", description=__doc__)
    parser.add_argument("--sizes", default="1000,1000000,100000000", help="bytes, comma-separated")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    setup_logging()
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(s < 1 for s in sizes):
        parser.error("sizes are positive numbers of bytes")
    with stdout_to_stderr():
        results = measure(sizes)
    if args.json:
        print(
            json.dumps({"bench": "result_growth", "sizes": {str(s): r for s, r in results.items()}})
        )
    else:
        print(table(results))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
