"""How a DAG's cost grows with its number of steps: validation, registration and running.

    python -m bench.dag_growth [--sizes 10,100,1000] [--shapes chain,wide] [--json]

For each size N and shape, one workflow of N no-op steps is declared (a `chain`: each step
after the one before; `wide`: one root, N-2 steps after it, one sink after all of them),
its schema built and validated, registered with the Ray-free Coordinator over a SQLite
store (synchronous=FULL, temp dir), and one run of it executed with an InlineExecutor (no
Ray: this measures wfray's own work per step, not Ray's dispatch). Beside it, raw Ray runs
the same shape as plain tasks (each task taking its predecessors' refs) on a local Ray
started in the same process. Each phase is reported per step, so growth is visible at a
glance: a flat column is linear cost. Peak memory of this process (ru_maxrss) is reported
per size. `--json` prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from typing import Any

from bench._common import setup_logging, start_ray, stdout_to_stderr


def noop() -> int:
    return 1


def raw_ray_s(size: int, shape: str) -> float:
    """The same DAG as plain Ray tasks: the wall time from the first submit to the sink."""
    import ray

    @ray.remote
    def task(*upstream: int) -> int:
        return 1

    began = time.perf_counter()
    if shape == "chain":
        ref = task.remote()
        for _ in range(size - 1):
            ref = task.remote(ref)
    else:
        root = task.remote()
        middle = [task.remote(root) for _ in range(size - 2)]
        ref = task.remote(*middle)
    ray.get(ref, timeout=600)
    return time.perf_counter() - began


def declare(size: int, shape: str) -> Any:
    from wfray.sdk.definition import Workflow

    flow = Workflow(f"dag_{shape}_{size}")
    names = [f"s{i:05d}" for i in range(size)]
    for i, name in enumerate(names):
        if shape == "chain":
            after = [names[i - 1]] if i else []
        elif i == 0:
            after = []
        elif i < size - 1:
            after = [names[0]]
        else:
            after = names[1:-1] or [names[0]]
        flow.step(name=name, after=after)(noop)
    return flow


async def register_and_run(schema: Any, folder: str) -> tuple[float, float]:
    from wfray.adapters.memory.executor import InlineExecutor
    from wfray.adapters.sqlalchemy.store import SqlRunStore
    from wfray.application.messages import SubmitRequest
    from wfray.bootstrap import SystemClock
    from wfray.coordinator.coordinator import Coordinator

    store = SqlRunStore(f"sqlite:///{folder}/{schema.name}.db")
    inline = InlineExecutor()
    coordinator = Coordinator(store, {"cpu": inline, "io": inline}, SystemClock())
    await coordinator.start()
    try:
        began = time.perf_counter()
        await coordinator.register([schema])
        registered = time.perf_counter()
        request = SubmitRequest("run-1", schema.name, schema.version, "null")
        (result,) = await coordinator.submit([request])
        assert result.error is None, result.error
        (view,) = await coordinator.wait(["run-1"], 600)
        assert view.status.finished and view.status.value == "completed", view
        ran = time.perf_counter()
    finally:
        await coordinator.stop()
        store.close()
    return registered - began, ran - registered


def measure(size: int, shape: str, folder: str) -> dict[str, float]:
    began = time.perf_counter()
    flow = declare(size, shape)
    schema = flow.schema  # builds and validates the DAG
    declared = time.perf_counter() - began
    register_s, run_s = asyncio.run(register_and_run(schema, folder))
    raw_s = raw_ray_s(size, shape)
    return {
        "steps": size,
        "raw_ray_us_per_step": raw_s / size * 1e6,
        "declare_us_per_step": declared / size * 1e6,
        "register_us_per_step": register_s / size * 1e6,
        "run_us_per_step": run_s / size * 1e6,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dag_growth", description=__doc__)
    parser.add_argument("--sizes", default="10,100,1000", help="steps per DAG, comma-separated")
    parser.add_argument("--shapes", default="chain,wide", help="chain and/or wide")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    setup_logging()
    sizes = [int(s) for s in args.sizes.split(",")]
    shapes = [s for s in args.shapes.split(",") if s]
    if any(s < 3 for s in sizes) or not set(shapes) <= {"chain", "wide"}:
        parser.error("sizes are at least 3; shapes are chain and wide")
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="wfray-dag-") as folder, stdout_to_stderr():
        start_ray(settle_s=10.0)
        raw_ray_s(10, "wide")  # warm the workers before anything is timed
        for shape in shapes:
            results[shape] = [measure(size, shape, folder) for size in sizes]
    if args.json:
        print(json.dumps({"bench": "dag_growth", "shapes": results}))
        return
    for shape, rows in results.items():
        print(f"{shape}: per step (us)      declare   register        run    raw Ray   peak MiB")
        for row in rows:
            print(
                f"  {int(row['steps']):>7,} steps  {row['declare_us_per_step']:>9.1f}"
                f"  {row['register_us_per_step']:>9.1f}  {row['run_us_per_step']:>9.1f}"
                f"  {row['raw_ray_us_per_step']:>9.1f}  {row['peak_rss_mib']:>9.0f}"
            )
        first, last = rows[0]["run_us_per_step"], rows[-1]["run_us_per_step"]
        print(f"  run cost per step, largest / smallest: {last / first:.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
