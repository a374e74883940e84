"""The coordinator's own ceiling: W1 with no Ray at all (optionally under cProfile).

    python -m bench.coordinator_inproc [--store sqlite|postgres] [--runs 2000] [--cprofile]
                                       [--json]

The Ray-free Coordinator with the real SqlRunStore (SQLite with synchronous=FULL in a temp
dir, or a throwaway PostgreSQL database) and an InlineExecutor per pool (steps run as
coroutines, sync ones in threads, in this process). It submits `--runs` no-op one-step runs
at once and waits for all of them, as W1 does. What this reaches is what the coordinator
and the store can do by themselves; the gap to bench.throughput's W1 is Ray's dispatch path
(executor actor, Ray tasks, actor calls). Store commits are timed by wrapping the store's
`commit` (batch rows per commit, commit latency). `--json` prints the figures as one JSON
object (with the store, its synchronous setting and the run count) instead of the text.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from bench._common import log, percentile, postgres_database, setup_logging, stdout_to_stderr


@contextlib.contextmanager
def store_url(store: str) -> Iterator[str]:
    if store == "postgres":
        with postgres_database() as url:
            yield url
    else:
        with tempfile.TemporaryDirectory(prefix="wfray-inproc-") as folder:
            yield f"sqlite:///{folder}/wfray.db"


class TimedStore:
    """Wraps a RunStore; records each commit's duration and size."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.commits: list[tuple[float, int]] = []

    def commit(self, batch: Any) -> None:
        began = time.perf_counter()
        self._store.commit(batch)
        self.commits.append((time.perf_counter() - began, len(batch)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def w1(
    url: str, runs: int, profiler: cProfile.Profile | None, synchronous: str = "FULL"
) -> dict[str, float]:
    from bench.workloads import bench_noop
    from wfray.adapters.memory.executor import InlineExecutor
    from wfray.adapters.sqlalchemy.store import SqlRunStore
    from wfray.application.messages import SubmitRequest
    from wfray.bootstrap import build_coordinator
    from wfray.config import load_settings

    settings = load_settings(env={}, data_dir=tempfile.gettempdir(), database_url=url)
    store = TimedStore(SqlRunStore(url, sqlite_synchronous=synchronous))
    executor = InlineExecutor()
    coordinator = build_coordinator(settings, store, {"cpu": executor, "io": executor})
    await coordinator.start()
    schema = bench_noop.__wfray_workflow__.schema
    await coordinator.register([schema])

    def requests(count: int) -> list[SubmitRequest]:
        return [
            SubmitRequest(uuid.uuid4().hex, schema.name, schema.version, "{}") for _ in range(count)
        ]

    try:
        warm = requests(50)
        await coordinator.submit(warm)
        await coordinator.wait([r.run_id for r in warm], 60)
        store.commits.clear()
        batch = requests(runs)
        if profiler is not None:
            profiler.enable()
        began = time.perf_counter()
        await coordinator.submit(batch)
        views = await coordinator.wait([r.run_id for r in batch], 600)
        wall = time.perf_counter() - began
        if profiler is not None:
            profiler.disable()
        done = sum(1 for v in views if v.status.value == "completed")
        if done != runs:
            raise RuntimeError(f"only {done} of {runs} runs completed")
    finally:
        await coordinator.stop()
        store.close()
    durations = [d for d, _ in store.commits]
    sizes = [n for _, n in store.commits]
    return {
        "steps_per_s": runs / wall,
        "wall_s": wall,
        "commits": len(durations),
        "commit_p50_ms": percentile(durations, 50) * 1000,
        "commit_p99_ms": percentile(durations, 99) * 1000,
        "commit_share_of_wall": sum(durations) / wall,
        "rows_per_commit": sum(sizes) / max(1, len(sizes)),
    }


def print_profile(profiler: cProfile.Profile, top: int, stream: TextIO) -> None:
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(top)
        print(f"-- cProfile, top {top} by {order} (event-loop thread only)", file=stream)
        print(out.getvalue().split("\n", 6)[-1].rstrip(), file=stream)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.coordinator_inproc", description=__doc__)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--runs", type=int, default=2000, help="runs submitted at once")
    parser.add_argument("--cprofile", action="store_true", help="profile the measured part")
    parser.add_argument(
        "--sqlite-synchronous", default="FULL", help="FULL (fsync per commit), NORMAL, OFF"
    )
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object only (cProfile to stderr)"
    )
    args = parser.parse_args(argv)
    setup_logging()
    profiler = cProfile.Profile() if args.cprofile else None
    with store_url(args.store) as url, stdout_to_stderr():
        result = asyncio.run(w1(url, args.runs, profiler, args.sqlite_synchronous))
    log.info("done")
    synchronous = args.sqlite_synchronous if args.store == "sqlite" else None
    if args.json:
        header = {"store": args.store, "sqlite_synchronous": synchronous, "runs": args.runs}
        print(json.dumps({**header, **{key: round(v, 4) for key, v in result.items()}}))
    else:
        sync = f" (synchronous={synchronous})" if synchronous else ""
        print(f"in-process coordinator, store {args.store}{sync}, W1 of {args.runs} no-op runs:")
        for key, value in result.items():
            print(f"  {key:<22} {value:,.2f}")
    if profiler is not None:
        print_profile(profiler, args.top, sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
