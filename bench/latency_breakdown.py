"""Where the unloaded latency of a one-step wfray run goes (W0_step, hop by hop).

    python -m bench.latency_breakdown [--store sqlite|postgres] [--runs 200] [--json]

Runs one-step no-op runs strictly one at a time (as W0_step: `client.execute`, submit and
wait in one call), stamping on the client (wall clock) the call and its return, then reads the times
wfray recorded itself (same host, same clock): the run's created_at and finished_at (the
coordinator's loop turns that took it in and that applied its outcome) and the attempt's
started_at and finished_at (inside the Ray worker). Medians of each hop:

    submit -> turn        client submit call until the coordinator turn that takes it in
    turn -> step starts   commit of that turn, dispatch to the executor actor, Ray task start
    step runs             the attempt in the worker (argument decoding, call, result encoding)
    step ends -> turn     the worker's own report to the coordinator (light load), next turn
    turn -> client        commit of that turn, the waiting call answered

`--json` prints one JSON object, `{"store", "runs", "hops_ms": {hop: {"p50", "p90",
"mean"}}}` (hops as above, plus "total").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from bench._common import (
    log,
    percentile,
    setup_logging,
    start_ray,
    stdout_to_stderr,
    wfray_instance,
)

HOPS = (
    "submit -> turn",
    "turn -> step starts",
    "step runs",
    "step ends -> turn",
    "turn -> client",
    "total",
)


def measure(store: str, runs: int) -> dict[str, list[float]]:
    from bench.workloads import bench_noop
    from wfray.adapters.sqlalchemy.store import SqlRunStore
    from wfray.domain.reads import RunFilter

    hops: dict[str, list[float]] = {hop: [] for hop in HOPS}
    with wfray_instance(store) as client:
        for _ in range(5):  # warm-up
            client.execute(bench_noop, timeout=60)
        stamps = []
        for _ in range(runs):
            began = time.time()
            client.execute(bench_noop, timeout=60)  # an id of its own: no store lookup
            stamps.append((began, time.time()))
        db = SqlRunStore(client.settings.database_url, create=False)
        try:
            # the runs just made, oldest first: one each, in the order of the stamps
            made = db.list_runs(RunFilter(client.workflow(bench_noop).name, limit=runs))[::-1]
            for run, (began, done) in zip(made, stamps, strict=True):
                attempt = db.get_attempts(run.run_id)[-1]
                assert run.finished_at and attempt.started_at and attempt.finished_at
                created = run.created_at.timestamp()
                started = attempt.started_at.timestamp()
                ended = attempt.finished_at.timestamp()
                finished = run.finished_at.timestamp()
                hops["submit -> turn"].append(created - began)
                hops["turn -> step starts"].append(started - created)
                hops["step runs"].append(ended - started)
                hops["step ends -> turn"].append(finished - ended)
                hops["turn -> client"].append(done - finished)
                hops["total"].append(done - began)
        finally:
            db.close()
    return hops


def summarise(hops: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """p50, p90 and mean of each hop, in milliseconds."""
    return {
        hop: {
            "p50": percentile(values, 50) * 1000,
            "p90": percentile(values, 90) * 1000,
            "mean": sum(values) / len(values) * 1000,
        }
        for hop, values in hops.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency_breakdown", description=__doc__)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--runs", type=int, default=200, help="runs, one at a time")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args(argv)
    setup_logging()
    import ray

    with stdout_to_stderr():
        start_ray()
        try:
            hops = summarise(measure(args.store, args.runs))
        finally:
            ray.shutdown()
    log.info("done")
    if args.json:
        rounded = {hop: {k: round(v, 3) for k, v in f.items()} for hop, f in hops.items()}
        print(json.dumps({"store": args.store, "runs": args.runs, "hops_ms": rounded}))
        return 0
    print(f"W0_step latency by hop, store {args.store}, {args.runs} runs one at a time (ms)")
    print(f"{'hop':<26}{'p50':>9}{'p90':>9}{'mean':>9}")
    for hop, figures in hops.items():
        print(f"{hop:<26}{figures['p50']:>9.2f}{figures['p90']:>9.2f}{figures['mean']:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
