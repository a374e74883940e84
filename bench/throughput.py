"""Throughput and latency of wfray (SQLite, PostgreSQL) against raw Ray, on no-op steps.

    python -m bench.throughput [--json] [--quick]

One process, one local Ray instance (2 CPUs, io=4), measured in this order: raw Ray tasks,
wfray on SQLite (fsync on every commit: synchronous=FULL, in a temporary data dir), wfray on
PostgreSQL (a throwaway database `wfray_bench_<hex>`, dropped afterwards). Each wfray
instance gets a fresh namespace and is shut down (its actor processes gone) before the
next system starts.

Workloads (steps are no-ops, so this measures the per-step overhead of each system):
    W0_step   one-step runs, strictly one at a time: submit, wait, repeat (unloaded latency)
    W0_chain  five-step chains, one at a time (each step's small result feeds the next)
    W1        independent one-step runs, all submitted at once (`submit_many`), then awaited
    W2        five-step chains, all submitted at once
Raw Ray runs the same shapes with `@ray.remote(num_cpus=1)` no-op functions; its chains pass
each ObjectRef to the next task. wfray's no-op step runs in its cpu pool, which is also a
Ray task holding one CPU. When many no-op steps wait (W1, W2), wfray runs up to eight of
them one after the other in one shared task (short steps, seen to take under 10 ms; each
still its own attempt and record: wfray/coordinator/shared_tasks.py); the human table adds a
column, wfray_sqlite_1pt, measured with no shared tasks (one attempt per task, as raw Ray); --json
leaves that column out and does not measure it. `--quick` runs about 5x fewer runs of the
same workloads.

Metrics per system and workload:
    steps_per_s       steps completed / wall time from the first submit to the last completion
    p50_ms, p99_ms    submit-to-completion latency of a run (chain: first step's submit to
                      the last step's completion, as seen by the submitting process)
    ratio_to_raw_ray  steps_per_s / raw Ray's steps_per_s on the same workload
The human table also shows raw Ray's p50 / the system's p50 ("p50 ratio").

How completion times are taken without distorting throughput:
    * W0: each run's latency is the time from the submit call to the return of the wait
      for it: `client.execute(flow)`, which submits and waits in one coordinator call and
      decodes the result (raw Ray: `ray.get(f.remote())`).
    * raw Ray W1/W2: a done-callback on each ref's future (`ref.future()`), attached right
      after its `.remote()`, stamps the completion. Event-driven: nothing polls, and the
      submit time is taken per task.
    * wfray W1/W2: run ids are chosen up front and split, in submission order, into at most
      100 chunks; one thread per chunk blocks in `client.wait(chunk)` (one coordinator call
      per chunk, no polling: the coordinator answers when the whole chunk has finished). The
      waiters are issued before the submission (1 s head start), so early completions are
      seen as they happen; a wait that arrives late still works, since the coordinator
      answers for already finished runs from the store. Every run of a chunk gets the chunk's
      completion time. Runs are dispatched in submission order, so a chunk's runs finish
      close together; the stamp overstates a run's latency by at most the time the system
      takes to finish one chunk (20 runs in W1, 2 chains in W2), small against the queueing
      delay that dominates these latencies. Its cost is 100 calls to the coordinator per
      workload against the several thousand it serves for the steps. All runs share one
      submit time: the start of the `submit_many` call (input validation included).
      Checked on this 2-core host: W1 with one waiter for all 2,000 runs and with 100
      waiters, 4 alternating rounds each, gave 300 and 286 steps/s on average, inside the
      run-to-run spread (240-380).
Every system is warmed up first (a few runs of each shape) so worker start-up, first
imports and schema registration are not measured (nor wfray's learning which steps are
short); after `ray.init` it waits until Ray's
own start-up work has died down.

The human table adds "host: others' cores": CPU used meanwhile by processes outside this
benchmark (its Ray instance, and the PostgreSQL backends serving its database, count as
its own), hypervisor steal included. On a 2-core host, figures measured while others used
more than ~0.2 cores are disturbed; rerun them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from bench._common import (
    GET_TIMEOUT_S,
    ForeignLoad,
    Measurement,
    log,
    postgres_backend_pids,
    setup_logging,
    start_ray,
    stdout_to_stderr,
    wfray_instance,
)

SYSTEMS = ("raw_ray", "wfray_sqlite", "wfray_postgres")
# Shown in the table, not in --json (nor measured then): wfray on SQLite with every attempt
# in a Ray task of its own (WFRAY_CPU_ATTEMPTS_PER_TASK=1: no shared tasks), so what shared
# tasks buy is measured in the same run, not claimed.
UNSHARED = "wfray_sqlite_1pt"
WORKLOADS = ("W0_step", "W0_chain", "W1", "W2")
CHAIN_STEPS = 5
MAX_WAITERS = 100
WAIT_TIMEOUT_S = 600.0
WAITER_HEAD_START_S = 1.0


@dataclass(frozen=True, slots=True)
class Counts:
    w0_steps: int
    w0_chains: int
    w1_runs: int
    w2_chains: int


FULL = Counts(w0_steps=200, w0_chains=100, w1_runs=2000, w2_chains=200)
QUICK = Counts(w0_steps=40, w0_chains=20, w1_runs=400, w2_chains=40)

Results = dict[str, dict[str, Measurement]]


# -- raw Ray ----------------------------------------------------------------------------------


class CompletionTracker:
    """Stamps the completion time of each ref through a done-callback on its future."""

    def __init__(self, count: int) -> None:
        self.submitted = [0.0] * count
        self.done = [0.0] * count
        self.errors: list[BaseException] = []
        self._left = count
        self._lock = threading.Lock()
        self._all_done = threading.Event()
        self._futures: list[Any] = []  # keeps the futures (and their refs) alive
        if count == 0:
            self._all_done.set()

    def watch(self, index: int, submitted: float, ref: Any) -> None:
        self.submitted[index] = submitted
        future = ref.future()
        self._futures.append(future)
        future.add_done_callback(lambda f: self._finished(index, f))

    def _finished(self, index: int, future: Future[Any]) -> None:
        self.done[index] = time.perf_counter()
        error = future.exception()
        with self._lock:
            if error is not None:
                self.errors.append(error)
            self._left -= 1
            if self._left == 0:
                self._all_done.set()

    def result(self, start: float, steps_per_item: int, timeout_s: float) -> Measurement:
        if not self._all_done.wait(timeout_s):
            raise TimeoutError(f"{self._left} raw Ray tasks unfinished after {timeout_s}s")
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} raw Ray tasks failed: {self.errors[0]!r}")
        latencies = tuple(d - s for s, d in zip(self.submitted, self.done, strict=True))
        return Measurement(len(self.done) * steps_per_item, max(self.done) - start, latencies)


def raw_sequential(make: Callable[[], Any], count: int, steps: int, expect: Any) -> Measurement:
    import ray

    latencies = []
    start = time.perf_counter()
    for _ in range(count):
        began = time.perf_counter()
        value = ray.get(make(), timeout=GET_TIMEOUT_S)
        latencies.append(time.perf_counter() - began)
        if value != expect:
            raise RuntimeError(f"raw Ray returned {value!r}, expected {expect!r}")
    return Measurement(count * steps, time.perf_counter() - start, tuple(latencies))


def raw_batch(make: Callable[[], Any], count: int, steps: int) -> Measurement:
    tracker = CompletionTracker(count)
    start = time.perf_counter()
    for index in range(count):
        submitted = time.perf_counter()
        tracker.watch(index, submitted, make())
    return tracker.result(start, steps, WAIT_TIMEOUT_S)


def bench_raw_ray(counts: Counts) -> dict[str, Measurement]:
    import ray

    from bench.workloads import ray_chain5, ray_noop

    log.info("raw Ray: warming up")
    ray.get([ray_noop.remote() for _ in range(50)], timeout=GET_TIMEOUT_S)
    ray.get([ray_chain5() for _ in range(10)], timeout=GET_TIMEOUT_S)
    raw_sequential(ray_noop.remote, 10, 1, None)
    return {
        "W0_step": measured(
            "raw_ray",
            f"W0_step ({counts.w0_steps} one-step runs, one at a time)",
            lambda: raw_sequential(ray_noop.remote, counts.w0_steps, 1, None),
        ),
        "W0_chain": measured(
            "raw_ray",
            f"W0_chain ({counts.w0_chains} chains, one at a time)",
            lambda: raw_sequential(ray_chain5, counts.w0_chains, CHAIN_STEPS, CHAIN_STEPS),
        ),
        "W1": measured(
            "raw_ray",
            f"W1 ({counts.w1_runs} one-step runs at once)",
            lambda: raw_batch(ray_noop.remote, counts.w1_runs, 1),
        ),
        "W2": measured(
            "raw_ray",
            f"W2 ({counts.w2_chains} chains at once)",
            lambda: raw_batch(ray_chain5, counts.w2_chains, CHAIN_STEPS),
        ),
    }


def measured(
    system: str, what: str, run: Callable[[], Measurement], client: Any = None
) -> Measurement:
    """Run one workload, noting how busy the rest of the host kept the CPUs meanwhile."""
    log.info("%s: %s", system, what)
    url = client.settings.database_url if client is not None else ""
    load = ForeignLoad(lambda: postgres_backend_pids(url))
    result = replace(run(), foreign_cores=load.cores())
    log.info("%s: %s", system, summary(result))
    return result


# -- wfray ------------------------------------------------------------------------------------


def check_completed(views: Sequence[Any], run_ids: Sequence[str]) -> None:
    from wfray.domain.status import RunStatus

    by_id = {view.run_id: view for view in views}
    bad = [
        (rid, by_id[rid].status.value if rid in by_id else "missing")
        for rid in run_ids
        if rid not in by_id or by_id[rid].status is not RunStatus.COMPLETED
    ]
    if bad:
        raise RuntimeError(f"{len(bad)} of {len(run_ids)} wfray runs did not complete: {bad[:5]}")


def wfray_sequential(client: Any, flow: Any, count: int, steps: int, expect: Any) -> Measurement:
    latencies = []
    start = time.perf_counter()
    for _ in range(count):
        began = time.perf_counter()
        value = client.execute(flow, timeout=WAIT_TIMEOUT_S)  # raises unless it completed
        latencies.append(time.perf_counter() - began)
        if value != expect:
            raise RuntimeError(f"wfray returned {value!r}, expected {expect!r}")
    return Measurement(count * steps, time.perf_counter() - start, tuple(latencies))


def wfray_batch(client: Any, flow: Any, count: int, steps: int) -> Measurement:
    """Submit `count` runs in one `submit_many`; chunked waiters stamp their completions."""
    run_ids = [uuid.uuid4().hex for _ in range(count)]
    size = math.ceil(count / MAX_WAITERS)
    chunks = [run_ids[i : i + size] for i in range(0, count, size)]
    issued = threading.Semaphore(0)

    def waiter(chunk: list[str]) -> tuple[list[str], list[Any], float]:
        issued.release()
        views = client.wait(chunk, timeout=WAIT_TIMEOUT_S)
        return chunk, views, time.perf_counter()

    with ThreadPoolExecutor(max_workers=len(chunks), thread_name_prefix="waiter") as pool:
        futures = [pool.submit(waiter, chunk) for chunk in chunks]
        for _ in chunks:
            issued.acquire()
        time.sleep(WAITER_HEAD_START_S)  # let the coordinator register the waits
        start = time.perf_counter()
        client.submit_many(flow, [None] * count, run_ids=run_ids)
        submitted = time.perf_counter()
        latencies: list[float] = []
        last = start
        for future in futures:
            chunk, views, done = future.result(timeout=WAIT_TIMEOUT_S + 60)
            check_completed(views, chunk)
            latencies.extend([done - start] * len(chunk))
            last = max(last, done)
    log.info("  submit_many of %d runs took %.3fs", count, submitted - start)
    return Measurement(count * steps, last - start, tuple(latencies))


def bench_wfray(
    store: str, counts: Counts, system: str, **overrides: Any
) -> dict[str, Measurement]:
    from bench.workloads import bench_chain5, bench_noop

    with wfray_instance(store, **overrides) as client:
        log.info("%s: warming up", system)
        wfray_sequential(client, bench_noop, 5, 1, None)
        wfray_sequential(client, bench_chain5, 3, CHAIN_STEPS, CHAIN_STEPS)
        wfray_batch(client, bench_noop, 50, 1)
        wfray_batch(client, bench_chain5, 10, CHAIN_STEPS)
        results = {
            "W0_step": measured(
                system,
                f"W0_step ({counts.w0_steps} one-step runs, one at a time)",
                lambda: wfray_sequential(client, bench_noop, counts.w0_steps, 1, None),
                client,
            ),
            "W0_chain": measured(
                system,
                f"W0_chain ({counts.w0_chains} chains, one at a time)",
                lambda: wfray_sequential(
                    client, bench_chain5, counts.w0_chains, CHAIN_STEPS, CHAIN_STEPS
                ),
                client,
            ),
            "W1": measured(
                system,
                f"W1 ({counts.w1_runs} one-step runs at once)",
                lambda: wfray_batch(client, bench_noop, counts.w1_runs, 1),
                client,
            ),
            "W2": measured(
                system,
                f"W2 ({counts.w2_chains} chains at once)",
                lambda: wfray_batch(client, bench_chain5, counts.w2_chains, CHAIN_STEPS),
                client,
            ),
        }
        log.info("%s: coordinator stats %s", system, client.stats())
    return results


# -- running and reporting --------------------------------------------------------------------


def run_all(counts: Counts, unshared: bool = True) -> Results:
    """Measure every system; `unshared=False` leaves out the table-only column."""
    import ray

    started = time.perf_counter()
    start_ray()
    try:
        results: Results = {"raw_ray": bench_raw_ray(counts)}
        for store in ("sqlite", "postgres"):
            results[f"wfray_{store}"] = bench_wfray(store, counts, f"wfray_{store}")
        if unshared:
            results[UNSHARED] = bench_wfray("sqlite", counts, UNSHARED, cpu_attempts_per_task=1)
    finally:
        ray.shutdown()
    log.info("all measured in %.0fs", time.perf_counter() - started)
    return results


def summary(m: Measurement) -> str:
    return (
        f"{m.steps} steps in {m.wall_s:.2f}s = {m.steps_per_s:.1f} steps/s, "
        f"p50 {m.p50_ms:.1f} ms, p99 {m.p99_ms:.1f} ms; other processes used "
        f"{m.foreign_cores:.2f} cores meanwhile"
    )


def as_json(results: Results) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for system in SYSTEMS:
        out[system] = {}
        for workload in WORKLOADS:
            m = results[system][workload]
            raw = results["raw_ray"][workload]
            out[system][workload] = {
                "steps_per_s": round(m.steps_per_s, 1),
                "p50_ms": round(m.p50_ms, 2),
                "p99_ms": round(m.p99_ms, 2),
                "ratio_to_raw_ray": round(m.steps_per_s / raw.steps_per_s, 4),
            }
    return out


def table(results: Results, counts: Counts) -> str:
    runs = {
        "W0_step": f"{counts.w0_steps} x 1 step, sequential",
        "W0_chain": f"{counts.w0_chains} x 5-step chain, sequential",
        "W1": f"{counts.w1_runs} x 1 step, at once",
        "W2": f"{counts.w2_chains} x 5-step chain, at once",
    }
    rows: list[tuple[str, Callable[[Measurement, Measurement], str]]] = [
        ("steps/s", lambda m, r: f"{m.steps_per_s:,.1f}"),
        ("p50 ms", lambda m, r: f"{m.p50_ms:,.1f}"),
        ("p99 ms", lambda m, r: f"{m.p99_ms:,.1f}"),
        ("wall s", lambda m, r: f"{m.wall_s:,.2f}"),
        ("steps/s ratio", lambda m, r: f"{m.steps_per_s / r.steps_per_s:.3f}"),
        ("p50 ratio raw/sys", lambda m, r: f"{r.p50_ms / m.p50_ms:.3f}"),
        ("host: others' cores", lambda m, r: f"{m.foreign_cores:.2f}"),
    ]
    width = 17
    shown = (*SYSTEMS, UNSHARED)
    lines = [f"{'workload':<10} {'metric':<18}" + "".join(f"{s:>{width}}" for s in shown)]
    lines.append("-" * len(lines[0]))
    for workload in WORKLOADS:
        lines.append(f"{workload:<10} ({runs[workload]})")
        raw = results["raw_ray"][workload]
        for label, fmt in rows:
            cells = "".join(f"{fmt(results[s][workload], raw):>{width}}" for s in shown)
            lines.append(f"{'':<10} {label:<18}{cells}")
    lines.append("")
    lines.append(
        "steps/s ratio = system steps/s / raw Ray steps/s; "
        "p50 ratio raw/sys = raw Ray p50 / system p50 (1 = as fast as raw Ray);\n"
        "host: others' cores = CPU used meanwhile by processes outside this benchmark (its "
        "Ray instance and\nthe PostgreSQL backends of its database); 2 cores in all: above "
        "~0.2 the figures are disturbed;\n"
        f"{UNSHARED} = wfray on SQLite with one attempt per Ray task "
        "(WFRAY_CPU_ATTEMPTS_PER_TASK=1): by default\nshort steps' attempts share tasks when the "
        "backlog is deep (not in --json)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument(
        "--json",
        action="store_true",
        help=f"print one JSON object only (without {UNSHARED}, which is then not measured)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="about 5x fewer runs of each workload (40, 20, 400, 40)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    counts = QUICK if args.quick else FULL
    log.info("counts: %s", counts)
    if args.json:
        with stdout_to_stderr():
            results = run_all(counts, unshared=False)  # not in the JSON: not measured
        sys.stdout.write(json.dumps(as_json(results)) + "\n")
    else:
        results = run_all(counts)
        print(table(results, counts))
        print()
        print("as JSON (what --json prints):")
        print(json.dumps(as_json(results)))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
