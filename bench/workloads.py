"""Workflows and Ray functions the benchmarks run (importable by Ray workers as bench.workloads).

The wfray workflows and the raw Ray functions do the same (no) work, so the difference
between the two is what wfray adds: durable bookkeeping and its dispatch path.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import ray
from pydantic import BaseModel

from wfray.domain.policy import RetryPolicy
from wfray.sdk.context import StepContext
from wfray.sdk.definition import Workflow
from wfray.sdk.tasks import task

# -- wfray ----------------------------------------------------------------------------------


@task
def bench_noop() -> None:
    """W0_step / W1: a one-step run that does nothing (cpu pool: a Ray task holding one CPU)."""
    return None


bench_chain5 = Workflow("bench_chain5")


@bench_chain5.step
def s1() -> int:
    return 1


@bench_chain5.step
def s2(s1: int) -> int:
    return s1 + 1


@bench_chain5.step
def s3(s2: int) -> int:
    return s2 + 1


@bench_chain5.step
def s4(s3: int) -> int:
    return s3 + 1


@bench_chain5.step
def s5(s4: int) -> int:
    return s4 + 1


@task(pool="io")  # type: ignore[untyped-decorator]
def bench_nap(seconds: float = 0.05) -> None:
    """backlog_memory: a brief io step, run on a queue with low concurrency."""
    time.sleep(seconds)


# -- raw Ray --------------------------------------------------------------------------------


@ray.remote(num_cpus=1)
def ray_noop() -> None:
    return None


@ray.remote(num_cpus=1)
def ray_one() -> int:
    return 1


@ray.remote(num_cpus=1)
def ray_inc(value: int) -> int:
    return value + 1


def ray_chain5() -> ray.ObjectRef[int]:
    """Five tasks, each receiving its predecessor's ObjectRef (resolved to 1, 2, ... by Ray)."""
    ref = ray_one.remote()
    for _ in range(4):
        ref = ray_inc.remote(ref)
    return ref


# -- one run fanning out over a list, then collecting (bench.fanout_growth) ----------------------


class FanOut(BaseModel):
    count: int


bench_fanout = Workflow("bench_fanout", input=FanOut)


@bench_fanout.step
def fan_source(input: FanOut) -> list[int]:
    return list(range(input.count))


@bench_fanout.step(map="fan_source")
def fan_item(fan_source: int) -> int:
    return fan_source


@bench_fanout.step
def fan_sum(fan_item: list[int]) -> int:
    return sum(fan_item)


@ray.remote(num_cpus=1)
def ray_fan_source(count: int) -> list[int]:
    return list(range(count))


@ray.remote(num_cpus=1)
def ray_fan_item(item: int) -> int:
    return item


@ray.remote(num_cpus=1)
def ray_fan_sum(refs: list[ray.ObjectRef]) -> int:  # type: ignore[type-arg]
    return sum(ray.get(refs, timeout=3600))


# -- results of growing size (bench.result_growth) --------------------------------------------


class ResultSize(BaseModel):
    size: int


bench_result = Workflow("bench_result", input=ResultSize)


@bench_result.step
def make_result(input: ResultSize) -> str:
    return "x" * input.size


@bench_result.step
def measure_result(make_result: str) -> int:
    return len(make_result)


@ray.remote
def ray_make_result(size: int) -> str:
    return "x" * size


@ray.remote
def ray_measure_result(text: str) -> int:
    return len(text)


# -- a backlog held back, then drained (bench.backlog_growth) -----------------------------------

GATE_LIMIT_S = 6 * 3600.0  # a gate left shut (the benchmark died) frees its CPU after this
GATE_POLL_S = 0.01


def wait_at_gate(started: str, gate: str) -> None:
    """Say so in the file `started`, then hold the CPU until the file `gate` exists."""
    Path(started).touch()
    deadline = time.monotonic() + GATE_LIMIT_S
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(GATE_POLL_S)


@task
def bench_gate(started: str, gate: str) -> None:
    """Holds one CPU until the benchmark opens the gate, so the backlog behind it queues."""
    wait_at_gate(started, gate)


@ray.remote(num_cpus=1)
def ray_gate(started: str, gate: str) -> None:
    wait_at_gate(started, gate)


# -- a run with a long history of attempts (bench.history_growth) ------------------------------


class History(BaseModel):
    items: int
    attempts: int  # per item: all but the last fail


# no backoff: the history builds as fast as the coordinator turns
bench_history = Workflow(
    "bench_history", input=History, retry=RetryPolicy(max_attempts=1_000, initial_delay_s=0)
)


@bench_history.step
def history_items(input: History) -> list[int]:
    return [input.attempts] * input.items


@bench_history.step(map="history_items")
def history_item(history_items: int, ctx: StepContext) -> int:
    if ctx.attempt < history_items:
        raise ValueError(f"attempt {ctx.attempt} of {history_items} fails on purpose")
    return ctx.attempt


@ray.remote(num_cpus=0)
class HistoryHolder:
    """Raw Ray's floor for reading a history: an actor hands N attempt-shaped dicts over."""

    def attempts(self, count: int) -> list[dict[str, object]]:
        now = datetime.now(UTC)
        return [
            {
                "run_id": "history",
                "step": "history_item",
                "map_index": i // 10,
                "attempt": i % 10 + 1,
                "status": "failed",
                "kind": "normal",
                "queued_at": now,
                "started_at": now,
                "finished_at": now,
                "node_id": "f" * 56,
                "worker_id": "e" * 56,
                "pid": 4242,
                "executor": "cpu",
                "error_type": "ValueError",
                "error_message": f"attempt {i % 10 + 1} of 10 fails on purpose",
                "traceback": "Traceback (most recent call last): ...",
            }
            for i in range(count)
        ]
