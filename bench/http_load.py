"""Sustained submissions over HTTP (Ray Serve) beside the same runs through the Python client.

    python -m bench.http_load [--seconds 20] [--max-runs 1000] [--clients 4] [--json]

One process, one local Ray instance, one wfray on SQLite with the HTTP API served by Ray
Serve on a free loopback port. Two phases, the same shape each: `--clients` threads submit
one-step no-op runs (`bench_noop`), one request at a time each, until `--seconds` have
passed or `--max-runs` runs are in; then every run is awaited.
    http     each thread POSTs /v1/runs with its own keep-alive httpx connection
    client   each thread calls `Client.submit` (one coordinator call per run)

Per phase:
    requests_per_s     runs accepted / time spent submitting
    p50_ms, p99_ms     latency of one submission (request sent -> 202 received)
    completions_per_s  runs completed / time from the first submission to the last completion
    ratio_to_client    the HTTP figure over the Python client's, measured in the same run

`--json` prints the two phases as a JSON list of objects (name, runs, requests_per_s, p50_ms,
p99_ms, completions_per_s, foreign_cores). Serve (its proxy and the API application) and the
Ray instance are shut down before the process exits, whatever happened.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from bench._common import (
    ForeignLoad,
    percentile,
    setup_logging,
    start_ray,
    stdout_to_stderr,
    wfray_instance,
)

log = logging.getLogger("bench.http_load")

WAIT_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    runs: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    completions_per_s: float
    foreign_cores: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sustain(
    make_submitter: Callable[[], Callable[[], str]], clients: int, seconds: float, max_runs: int
) -> tuple[list[str], list[float], float, float]:
    """Run `clients` threads submitting until the time or the run budget is spent.

    Returns the run ids, the per-submission latencies, the start time and the time the
    last submission was answered.
    """
    run_ids: list[str] = []
    latencies: list[float] = []
    lock = threading.Lock()
    budget = iter(range(max_runs))  # next() on a shared iterator: one ticket per run
    started = time.perf_counter()
    stop_at = started + seconds

    def work() -> None:
        submit = make_submitter()
        while time.perf_counter() < stop_at:
            with lock:
                if next(budget, None) is None:
                    return
            sent = time.perf_counter()
            run_id = submit()
            took = time.perf_counter() - sent
            with lock:
                run_ids.append(run_id)
                latencies.append(took)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return run_ids, latencies, started, time.perf_counter()


def measure(
    name: str,
    client: Any,
    make_submitter: Callable[[], Callable[[], str]],
    args: argparse.Namespace,
) -> Phase:
    load = ForeignLoad()
    run_ids, latencies, started, submitted = sustain(
        make_submitter, args.clients, args.seconds, args.max_runs
    )
    views = client.wait(run_ids, timeout=WAIT_TIMEOUT_S)
    done = time.perf_counter()
    unfinished = [v.run_id for v in views if not v.status.finished]
    if unfinished or len(views) != len(run_ids):
        raise RuntimeError(f"{name}: {len(unfinished)} runs not finished in {WAIT_TIMEOUT_S}s")
    log.info("%s: %d runs submitted in %.1fs", name, len(run_ids), submitted - started)
    return Phase(
        name=name,
        runs=len(run_ids),
        requests_per_s=len(run_ids) / (submitted - started),
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        completions_per_s=len(run_ids) / (done - started),
        foreign_cores=load.cores(),
    )


def wait_until_served(url: str, timeout_s: float = 60.0) -> None:
    """Serve reports an app running before its proxy routes to it: poll until it does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API at {url} did not answer /healthz within {timeout_s}s")


def http_submitter(url: str) -> Callable[[], Callable[[], str]]:
    def make() -> Callable[[], str]:
        http = httpx.Client(base_url=url, timeout=60)  # closed with the process

        def submit() -> str:
            answer = http.post("/v1/runs", json={"workflow": "bench_noop"})
            if answer.status_code != 202:
                raise RuntimeError(f"POST /v1/runs: {answer.status_code} {answer.text}")
            run_id: str = answer.json()["run_id"]
            return run_id

        return submit

    return make


def client_submitter(client: Any, flow: Any) -> Callable[[], Callable[[], str]]:
    def make() -> Callable[[], str]:
        def submit() -> str:
            run_id: str = client.submit(flow).run_id
            return run_id

        return submit

    return make


def run(args: argparse.Namespace) -> list[Phase]:
    import ray

    start_ray()
    try:
        return serve_and_measure(args)
    finally:
        ray.shutdown()


def serve_and_measure(args: argparse.Namespace) -> list[Phase]:
    from bench import workloads
    from wfray.entrypoints.http.serve import start_api, stop_api

    with wfray_instance("sqlite", modules=("bench.workloads",), api_port=free_port()) as client:
        try:
            url = start_api(client.settings)
            log.info("API served at %s", url)
            wait_until_served(url)
            warm = [client.submit(workloads.bench_noop).run_id for _ in range(5)]
            for _ in range(5):
                httpx.post(f"{url}/v1/runs", json={"workflow": "bench_noop"}, timeout=60)
            client.wait(warm, timeout=WAIT_TIMEOUT_S)
            return [
                measure("http", client, http_submitter(url), args),
                measure("client", client, client_submitter(client, workloads.bench_noop), args),
            ]
        finally:
            stop_api()


def report(phases: list[Phase], as_json: bool) -> None:
    by_name = {p.name: p for p in phases}
    base = by_name["client"]
    if as_json:
        print(json.dumps([asdict(p) for p in phases], indent=2))
        return
    print(
        f"{'system':<8} {'runs':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'done/s':>8} {'req/s vs client':>16} {'others cores':>13}"
    )
    for phase in phases:
        print(
            f"{phase.name:<8} {phase.runs:>6} {phase.requests_per_s:>8.1f} "
            f"{phase.p50_ms:>8.1f} {phase.p99_ms:>8.1f} {phase.completions_per_s:>8.1f} "
            f"{phase.requests_per_s / base.requests_per_s:>16.2f} {phase.foreign_cores:>13.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_load", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="submission time per phase")
    parser.add_argument("--max-runs", type=int, default=1000, help="runs per phase at most")
    parser.add_argument("--clients", type=int, default=4, help="concurrent submitting threads")
    parser.add_argument("--json", action="store_true", help="print one JSON list only")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    # Ray and Serve print to fd 1 (Serve's start-up lines): keep stdout for the results
    with stdout_to_stderr():
        phases = run(args)
    report(phases, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
