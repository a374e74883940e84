"""A run's history of 100, 1,000 and 10,000 attempts read back: cost per attempt per reader.

    python -m bench.history_growth [--json] [--quick] [--sizes 100,1000,10000]

One process, one local Ray instance (2 CPUs), one wfray on SQLite. For each size N it runs
one `bench_history` run: a step returns N/10 items and a mapped step fails on each item
nine times before it succeeds (retries without backoff: N attempts, plus one for the first
step; the quickest way to a long history through the real coordinator). Then each reader
reads that run, best of three:

    * detail        `client.detail(run_id)`: every task and attempt, over Ray (the Python
                    client asks the coordinator actor, which reads the store)
    * cli           `wfray show RUN` in this process (its output captured): one bounded page
    * cli --all     `wfray show RUN --all`: the whole tree
    * api           GET /v1/runs/{id} (Ray Serve on loopback): the default page
    * api pages     GET /v1/runs/{id}?limit=1000, following next_cursor to the end
    * raw Ray       an actor returns N attempt-shaped dicts to the driver: the floor of
                    moving that history between two Ray processes

Per reader: wall ms and microseconds per attempt. What must hold: the whole readers (detail,
cli --all, api pages) cost the same per attempt at every size, and the default CLI and API
answers cost the same whatever N (they are one page). `--quick` runs 100 and 1,000.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
import psutil

from bench._common import (
    GET_TIMEOUT_S,
    ForeignLoad,
    cell,
    log,
    setup_logging,
    start_ray,
    stdout_to_stderr,
    wfray_instance,
)
from bench.http_load import free_port, wait_until_served

ATTEMPTS_PER_ITEM = 10
REPEATS = 3
API_PAGE = 1000  # the API's largest page
BUILD_TIMEOUT_S = 3600.0
SERVE_TIMEOUT_S = 300.0  # Serve's proxy takes long to route on a loaded machine


def best_of(read: Callable[[], Any]) -> tuple[float, Any]:
    """The shortest wall time of `REPEATS` reads, and what the last one returned."""
    best, answer = float("inf"), None
    for _ in range(REPEATS):
        started = time.perf_counter()
        answer = read()
        best = min(best, time.perf_counter() - started)
    return best, answer


@contextlib.contextmanager
def cli_environment(database_url: str, data_dir: str) -> Iterator[None]:
    """`wfray` reads its store from the environment, as it does from a shell."""
    saved = {name: os.environ.get(name) for name in ("WFRAY_DATABASE_URL", "WFRAY_DATA_DIR")}
    os.environ["WFRAY_DATABASE_URL"], os.environ["WFRAY_DATA_DIR"] = database_url, data_dir
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cli_show(*args: str) -> str:
    from wfray.entrypoints.cli import main

    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        code = main(["show", *args])
    assert code == 0, (code, args)
    return captured.getvalue()


def api_all_pages(http: httpx.Client, run_id: str) -> tuple[int, int]:
    """Every page of the run's detail; (pages, attempts read)."""
    pages = attempts = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": API_PAGE} | ({"cursor": cursor} if cursor else {})
        body = http.get(f"/v1/runs/{run_id}", params=params).raise_for_status().json()
        pages += 1
        attempts += len(body["attempts"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages, attempts


def build_history(client: Any, items: int) -> tuple[str, float]:
    from bench.workloads import bench_history

    started = time.perf_counter()
    handle = client.submit(bench_history, {"items": items, "attempts": ATTEMPTS_PER_ITEM})
    # wait, not result(): a run ending in a mapped step fails to decode its list result in
    # the client (the sink's return type, an int, is used for the whole list)
    (view,) = client.wait([handle.run_id], timeout=BUILD_TIMEOUT_S)
    assert view.status.value == "completed", view
    return handle.run_id, time.perf_counter() - started


def raw_ray_floor(attempts: int) -> float:
    import ray

    from bench.workloads import HistoryHolder

    holder = HistoryHolder.remote()  # type: ignore[attr-defined]
    try:
        wall, records = best_of(
            lambda: ray.get(holder.attempts.remote(attempts), timeout=GET_TIMEOUT_S)
        )
        assert len(records) == attempts
        return wall
    finally:
        ray.kill(holder)


def read_all(client: Any, http: httpx.Client, run_id: str) -> dict[str, Any]:
    from wfray.application.client_commands import Pid

    coordinator = psutil.Process(int(client.call(Pid())))
    before = coordinator.cpu_times()
    detail_s, detail = best_of(lambda: client.detail(run_id))
    after = coordinator.cpu_times()
    attempts = len(detail.attempts)
    cpu = (after.user + after.system - before.user - before.system) / REPEATS
    with cli_environment(client.settings.database_url, client.settings.data_dir):
        cli_s, shown = best_of(lambda: cli_show(run_id))
        cli_all_s, shown_all = best_of(lambda: cli_show(run_id, "--all"))
    api_s, first = best_of(lambda: http.get(f"/v1/runs/{run_id}").raise_for_status())
    pages_s, (pages, paged) = best_of(lambda: api_all_pages(http, run_id))
    assert paged == attempts, (paged, attempts)
    raw_s = raw_ray_floor(attempts)

    def us(seconds: float) -> float:
        return round(seconds / attempts * 1e6, 1)

    return {
        "attempts": attempts,
        "detail_ms": round(detail_s * 1e3, 1),
        "detail_us_per_attempt": us(detail_s),
        "detail_coordinator_cpu_us_per_attempt": round(cpu / attempts * 1e6, 1),
        "cli_ms": round(cli_s * 1e3, 1),
        "cli_lines": shown.count("\n"),
        "cli_all_ms": round(cli_all_s * 1e3, 1),
        "cli_all_us_per_attempt": us(cli_all_s),
        "cli_all_lines": shown_all.count("\n"),
        "api_ms": round(api_s * 1e3, 1),
        "api_attempts": len(first.json()["attempts"]),
        "api_kib": round(len(first.content) / 1024, 1),
        "api_pages_ms": round(pages_s * 1e3, 1),
        "api_pages_us_per_attempt": us(pages_s),
        "api_pages": pages,
        "raw_ray_us_per_attempt": us(raw_s),
    }


WHOLE_READERS = ("detail", "cli_all", "api_pages")


def marginal(figures: dict[str, Any], base: dict[str, Any]) -> dict[str, float]:
    """Each whole reader's cost per attempt beyond what it costs for a run of two attempts
    (a call, a process hop, an HTTP request): how the cost grows with the history."""
    extra = figures["attempts"] - base["attempts"]
    return {
        f"{reader}_marginal_us_per_attempt": round(
            (figures[f"{reader}_ms"] - base[f"{reader}_ms"]) / extra * 1e3, 1
        )
        for reader in WHOLE_READERS
    }


def measure(sizes: Sequence[int]) -> dict[int, dict[str, Any]]:
    import ray

    from wfray.entrypoints.http.serve import start_api, stop_api

    start_ray()
    try:
        with wfray_instance("sqlite", api_port=free_port()) as client:
            # warms the workers up, and is the fixed cost each reader pays for any run
            baseline_id, _ = build_history(client, 1)
            built = {}
            for size in sizes:
                run_id, build_s = build_history(client, max(1, size // ATTEMPTS_PER_ITEM))
                log.info("history of %d attempts built in %.1fs", size, build_s)
                built[size] = (run_id, build_s)
            try:
                url = start_api(client.settings)
                wait_until_served(url, timeout_s=SERVE_TIMEOUT_S)
                with httpx.Client(base_url=url, timeout=GET_TIMEOUT_S) as http:
                    base = read_all(client, http, baseline_id)
                    results = {}
                    for size, (run_id, build_s) in built.items():
                        load = ForeignLoad()
                        figures = read_all(client, http, run_id)
                        figures |= marginal(figures, base)
                        figures["build_us_per_attempt"] = round(build_s / size * 1e6, 1)
                        figures["others_cores"] = round(load.cores(), 2)
                        log.info("read %d attempts: %s", size, figures)
                        results[size] = figures
                    return results
            finally:
                stop_api()
    finally:
        ray.shutdown()


ROWS = (
    ("attempts in the run", "attempts"),
    ("build (run with retries): us per attempt", "build_us_per_attempt"),
    ("detail (Python client): ms", "detail_ms"),
    ("detail: us per attempt", "detail_us_per_attempt"),
    ("detail: us per attempt beyond a 2-attempt run", "detail_marginal_us_per_attempt"),
    ("detail: coordinator CPU us per attempt", "detail_coordinator_cpu_us_per_attempt"),
    ("wfray show (default page): ms", "cli_ms"),
    ("wfray show (default page): lines", "cli_lines"),
    ("wfray show --all: ms", "cli_all_ms"),
    ("wfray show --all: us per attempt", "cli_all_us_per_attempt"),
    ("wfray show --all: us/attempt beyond a 2-attempt run", "cli_all_marginal_us_per_attempt"),
    ("wfray show --all: lines", "cli_all_lines"),
    ("API GET /v1/runs/{id} (default page): ms", "api_ms"),
    ("API default page: attempts in it", "api_attempts"),
    ("API default page: KiB", "api_kib"),
    ("API every page (1,000 each): ms", "api_pages_ms"),
    ("API every page: us per attempt", "api_pages_us_per_attempt"),
    ("API every page: us/attempt beyond a 2-attempt run", "api_pages_marginal_us_per_attempt"),
    ("raw Ray (actor returns N dicts): us per attempt", "raw_ray_us_per_attempt"),
    ("host: others' cores while reading", "others_cores"),
)


def table(results: dict[int, dict[str, Any]]) -> str:
    width = 14
    header = f"{'':<52}" + "".join(f"{f'{size:,}':>{width}}" for size in results)
    lines = [header, "-" * len(header)]
    for label, key in ROWS:
        cells = "".join(f"{cell(results[size][key]):>{width}}" for size in results)
        lines.append(f"{label:<52}{cells}")
    lines.append("")
    lines.append(
        f"one run per size: N/{ATTEMPTS_PER_ITEM} mapped items, each failing "
        f"{ATTEMPTS_PER_ITEM - 1} times before it succeeds; wfray on SQLite; best of {REPEATS}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history_growth", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 attempts only")
    parser.add_argument("--sizes", default=None, help="attempts per run, in order (overrides)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    else:
        sizes = [100, 1_000] if args.quick else [100, 1_000, 10_000]
    if args.json:
        with stdout_to_stderr():
            results = measure(sizes)
        sys.stdout.write(json.dumps({str(k): v for k, v in results.items()}) + "\n")
    else:
        print(table(measure(sizes)))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
