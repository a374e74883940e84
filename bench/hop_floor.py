"""The floor under W0: wfray's message path for one unloaded run, on bare Ray, with no store.

    python -m bench.hop_floor [--runs 200] [--rounds 3] [--json]

A durable run must be decided by the coordinator (a detached actor), launched by an executor
(another detached actor, so that killing the coordinator kills no running step), run in a Ray
task, and reported back to the coordinator before the caller hears of it:

    caller -> coordinator -> executor -> task -> coordinator -> caller

Here the coordinator and the executor are empty async actors that only pass the message on
(no commit, no decisions): what this measures is what Ray's hops alone cost on this machine,
printed beside a raw `ray.get(noop.remote())` measured in the same rounds. wfray's W0 latency
is this floor plus two commits and its own bookkeeping. `--json` prints the rounds as one
JSON object, `{"rounds": [{"hop_chain_p50_ms", "raw_ray_p50_ms", "ratio"}, ...]}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench._common import GET_TIMEOUT_S, setup_logging, start_ray, stdout_to_stderr


def actors() -> tuple[Any, Any, Any]:
    import ray

    @ray.remote(num_cpus=1)
    def step(coordinator: Any) -> int:
        coordinator.report.remote(1)  # the worker's own report, as wfray's under light load
        return 1

    @ray.remote(num_cpus=0)
    class Executor:
        async def dispatch(self, coordinator: Any) -> None:
            step.remote(coordinator)

    @ray.remote(num_cpus=0)
    class Coordinator:
        def __init__(self) -> None:
            self.waiter: asyncio.Future[int] | None = None

        async def run(self, executor: Any) -> int:
            self.waiter = asyncio.get_running_loop().create_future()
            await executor.dispatch.remote(ray.get_runtime_context().current_actor)
            return await self.waiter

        async def report(self, value: int) -> None:
            assert self.waiter is not None
            self.waiter.set_result(value)

    @ray.remote(num_cpus=1)
    def noop() -> None:
        return None

    return Coordinator.remote(), Executor.remote(), noop


def p50_ms(call: Any, runs: int) -> float:
    import ray

    latencies = []
    for _ in range(runs):
        began = time.perf_counter()
        ray.get(call(), timeout=GET_TIMEOUT_S)
        latencies.append(time.perf_counter() - began)
    return statistics.median(latencies) * 1000


def measure(runs: int, rounds: int) -> list[dict[str, float]]:
    """p50 of the hop chain and of a raw Ray task, `runs` each, per round (on a running Ray)."""
    coordinator, executor, noop = actors()
    p50_ms(lambda: coordinator.run.remote(executor), 30)  # warm-up: workers, leases
    p50_ms(noop.remote, 30)
    measured = []
    for _ in range(rounds):
        chain = p50_ms(lambda: coordinator.run.remote(executor), runs)
        raw = p50_ms(noop.remote, runs)
        measured.append({"hop_chain_p50_ms": chain, "raw_ray_p50_ms": raw, "ratio": chain / raw})
    return measured


def main(argv: Sequence[str] | None = None) -> int:
    import ray

    parser = argparse.ArgumentParser(prog="python -m bench.hop_floor", description=__doc__)
    parser.add_argument("--runs", type=int, default=200, help="calls per figure and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args(argv)
    setup_logging()
    with stdout_to_stderr():
        start_ray()
        try:
            rounds = measure(args.runs, args.rounds)
        finally:
            ray.shutdown()
    if args.json:
        print(json.dumps({"rounds": [{k: round(v, 3) for k, v in r.items()} for r in rounds]}))
        return 0
    print("p50 ms: hop chain (no store) | raw Ray task | ratio")
    for r in rounds:
        print(f"{r['hop_chain_p50_ms']:6.2f} | {r['raw_ray_p50_ms']:6.2f} | {r['ratio']:4.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
