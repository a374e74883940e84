"""Every benchmark in bench/ runs at its smallest size, as a user runs it, and prints the JSON
it promises.

`python -m bench.X --json ...` from the repository root in a subprocess of its own (each
benchmark starts and stops its own local Ray instance on random ports, never 6379), one after
the other. Only the shape is checked: exit code 0 within a timeout, the JSON's keys and
figure names, figures that are numbers; never the figures themselves, which depend on the
machine. Every process a benchmark starts (Ray's, Serve's proxy, py-spy) carries a marker in
its environment and must be gone once the benchmark has exited.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEFAULT_POSTGRES_URL, service_unavailable
from tests.fixtures.processes import MARK, kill_marked

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
# Imported by the benchmarks, not run by users; a new library module is added here, any
# other new module needs a smoke run below.
LIBRARIES = frozenset({"__init__", "_common", "workloads"})
# Ray processes outlive ray.shutdown() by a moment; a process still there after this leaked.
EXIT_GRACE_S = 30.0
SMOKE_CONCURRENCY = 3


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def assert_figures(
    found: Any, names: set[str], may_be_missing: frozenset[str] = frozenset()
) -> None:
    """`found` is an object with exactly these figures, each a number (or null if allowed)."""
    assert isinstance(found, dict), found
    assert set(found) == names, f"figures {sorted(found)}, promised {sorted(names)}"
    for name in names:
        value = found[name]
        assert is_number(value) or (value is None and name in may_be_missing), (name, value)


# -- what each benchmark promises ------------------------------------------------------------


def check_throughput(out: Any) -> None:
    assert set(out) == {"raw_ray", "wfray_sqlite", "wfray_postgres"}
    for system, workloads in out.items():
        assert set(workloads) == {"W0_step", "W0_chain", "W1", "W2"}, system
        for figures in workloads.values():
            assert_figures(figures, {"steps_per_s", "p50_ms", "p99_ms", "ratio_to_raw_ray"})


def check_backlog_memory(out: Any) -> None:
    assert set(out) == {"100"}, "one result per backlog size, keyed by the size"
    assert_figures(
        out["100"],
        {
            "runs_submitted",
            "submit_s",
            "submits_per_s",
            "rss_idle_mib",
            "rss_after_submit_mib",
            "rss_settled_mib",
            "peak_rss_mib",
            "runs_in_memory_after_submit",
            "tasks_held_after_submit",
            "runs_in_memory",
            "tasks_held",
            "queued",
            "running_attempts",
        },
        may_be_missing=frozenset({"peak_rss_mib"}),
    )


def check_coordinator_inproc(out: Any) -> None:
    assert out["store"] == "sqlite"
    assert out["sqlite_synchronous"] == "FULL"
    figures = {
        key: value for key, value in out.items() if key not in {"store", "sqlite_synchronous"}
    }
    assert_figures(
        figures,
        {
            "runs",
            "steps_per_s",
            "wall_s",
            "commits",
            "commit_p50_ms",
            "commit_p99_ms",
            "commit_share_of_wall",
            "rows_per_commit",
        },
    )


def check_result_growth(out: Any) -> None:
    assert out["bench"] == "result_growth" and set(out["sizes"]) == {"1000", "300000"}
    for result in out["sizes"].values():
        assert is_number(result["cost_ratio"])
        assert_figures(result["raw_ray"], {"wall_ms", "ms_per_mb"})
        assert_figures(
            result["wfray_sqlite"],
            {"wall_ms", "ms_per_mb", "coordinator_cpu_ms", "coordinator_peak_rss_mib"},
            may_be_missing=frozenset({"coordinator_peak_rss_mib"}),
        )


def check_dag_growth(out: Any) -> None:
    assert out["bench"] == "dag_growth" and set(out["shapes"]) == {"chain", "wide"}
    for rows in out["shapes"].values():
        assert [row["steps"] for row in rows] == [10, 20], "one row per size, in order"
        for row in rows:
            assert_figures(
                row,
                {
                    "steps",
                    "declare_us_per_step",
                    "register_us_per_step",
                    "run_us_per_step",
                    "raw_ray_us_per_step",
                    "peak_rss_mib",
                },
            )


def check_fanout_growth(out: Any) -> None:
    assert set(out) == {"100"}, "one result per fan-out size, keyed by the size"
    result = out["100"]
    assert set(result) == {"raw_ray", "wfray_sqlite", "cost_ratio"}
    assert is_number(result["cost_ratio"])
    assert_figures(
        result["raw_ray"], {"wall_s", "us_per_item", "driver_cpu_us_per_item", "others_cores"}
    )
    assert_figures(
        result["wfray_sqlite"],
        {
            "wall_s",
            "us_per_item",
            "coordinator_cpu_us_per_item",
            "coordinator_peak_rss_mib",
            "others_cores",
        },
        may_be_missing=frozenset({"coordinator_peak_rss_mib"}),
    )


def check_backlog_growth(out: Any) -> None:
    assert set(out) == {"100"}, "one result per backlog size, keyed by the size"
    result = out["100"]
    assert set(result) == {"raw_ray", "wfray_sqlite"}
    assert_figures(
        result["raw_ray"],
        {
            "queue_us_per_run",
            "drain_us_per_run",
            "driver_cpu_queue_us_per_run",
            "driver_cpu_drain_us_per_run",
            "others_cores_queue",
            "others_cores_drain",
        },
    )
    assert_figures(
        result["wfray_sqlite"],
        {
            "queue_us_per_run",
            "drain_us_per_run",
            "coordinator_cpu_queue_us_per_run",
            "coordinator_cpu_drain_us_per_run",
            "coordinator_rss_idle_mib",
            "coordinator_rss_queued_mib",
            "coordinator_peak_rss_mib",
            "tasks_held_queued",
            "backlog_queued",
            "others_cores_queue",
            "others_cores_drain",
        },
        may_be_missing=frozenset({"coordinator_peak_rss_mib"}),
    )


def check_history_growth(out: Any) -> None:
    assert set(out) == {"100"}, "one result per history size, keyed by the size"
    readers = ("detail", "cli_all", "api_pages")
    assert_figures(
        out["100"],
        {
            "attempts",
            "build_us_per_attempt",
            "detail_ms",
            "detail_us_per_attempt",
            "detail_coordinator_cpu_us_per_attempt",
            "cli_ms",
            "cli_lines",
            "cli_all_ms",
            "cli_all_us_per_attempt",
            "cli_all_lines",
            "api_ms",
            "api_attempts",
            "api_kib",
            "api_pages_ms",
            "api_pages_us_per_attempt",
            "api_pages",
            "raw_ray_us_per_attempt",
            "others_cores",
        }
        | {f"{reader}_marginal_us_per_attempt" for reader in readers},
    )


def check_hop_floor(out: Any) -> None:
    assert set(out) == {"rounds"}
    assert len(out["rounds"]) == 1, "--rounds 1"
    assert_figures(out["rounds"][0], {"hop_chain_p50_ms", "raw_ray_p50_ms", "ratio"})


def check_http_load(out: Any) -> None:
    assert isinstance(out, list), out
    assert [phase.get("name") for phase in out] == ["http", "client"]
    for phase in out:
        figures = {key: value for key, value in phase.items() if key != "name"}
        assert_figures(
            figures,
            {"runs", "requests_per_s", "p50_ms", "p99_ms", "completions_per_s", "foreign_cores"},
        )


def check_latency_breakdown(out: Any) -> None:
    assert set(out) == {"store", "runs", "hops_ms"}
    assert (out["store"], out["runs"]) == ("sqlite", 10)
    hops = out["hops_ms"]
    assert list(hops) == [
        "submit -> turn",
        "turn -> step starts",
        "step runs",
        "step ends -> turn",
        "turn -> client",
        "total",
    ]
    for figures in hops.values():
        assert_figures(figures, {"p50", "p90", "mean"})


def check_profile_w1(out: Any) -> None:
    assert set(out) == {
        "store",
        "mode",
        "duration_s",
        "rate",
        "raw_dir",
        "w1",
        "cores",
        "others_cores",
        "samples",
    }
    assert (out["store"], out["mode"]) == ("sqlite", "on-CPU")
    assert is_number(out["duration_s"]) and is_number(out["rate"])
    assert_figures(out["w1"], {"steps", "seconds", "steps_per_s"})
    assert "total" in out["cores"] and all(is_number(v) for v in out["cores"].values())
    assert_figures(out["samples"], {"coordinator", "executor-cpu", "task workers"})
    # py-spy's own files, in the folder the test gave it
    assert list(Path(out["raw_dir"]).glob("coordinator-*.txt")), "py-spy wrote no samples"


# -- the benchmarks at their smallest sizes --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Smoke:
    module: str
    args: tuple[str, ...]
    timeout_s: float
    check: Callable[[Any], None]
    starts_ray: bool = True
    postgres: bool = False
    py_spy: bool = False


# Timeouts catch a benchmark that hangs, not one that is slow: doubled after one ran over
# its earlier timeout on a machine busy with other work (two cores, three benchmarks at once).
SMOKES: tuple[Smoke, ...] = (
    Smoke("coordinator_inproc", ("--runs", "100"), 150, check_coordinator_inproc, starts_ray=False),
    Smoke("hop_floor", ("--runs", "10", "--rounds", "1"), 180, check_hop_floor),
    Smoke("latency_breakdown", ("--runs", "10"), 180, check_latency_breakdown),
    Smoke("backlog_memory", ("--sizes", "100"), 180, check_backlog_memory),
    Smoke("fanout_growth", ("--sizes", "100"), 180, check_fanout_growth),
    Smoke("backlog_growth", ("--sizes", "100"), 240, check_backlog_growth),
    Smoke("history_growth", ("--sizes", "100"), 600, check_history_growth),
    Smoke("dag_growth", ("--sizes", "10,20"), 180, check_dag_growth),
    Smoke("result_growth", ("--sizes", "1000,300000"), 240, check_result_growth),
    Smoke(
        "http_load",
        ("--seconds", "1", "--max-runs", "10", "--clients", "2"),
        240,
        check_http_load,
    ),
    Smoke("profile_w1", ("--duration", "1", "--runs", "50"), 240, check_profile_w1, py_spy=True),
    Smoke("throughput", ("--quick",), 360, check_throughput, postgres=True),
)

# all of them one after the other, the worst case of SMOKE_CONCURRENCY at a time
SMOKES_TIMEOUT_S = sum(smoke.timeout_s + EXIT_GRACE_S for smoke in SMOKES)


def smoke_param(smoke: Smoke) -> Any:
    # the first test's set-up runs them all: each test may wait for every one of them
    marks = [pytest.mark.slow, pytest.mark.timeout(SMOKES_TIMEOUT_S)]
    if smoke.starts_ray:
        marks.append(pytest.mark.ray)
    if smoke.postgres:
        marks.append(pytest.mark.postgres)
    return pytest.param(smoke, id=smoke.module, marks=marks)


def runnable_modules() -> set[str]:
    """The modules of bench/ a user runs with `python -m bench.X`: all but the libraries."""
    return {path.stem for path in BENCH.glob("*.py")} - LIBRARIES


def test_every_runnable_benchmark_has_a_smoke_run() -> None:
    assert {smoke.module for smoke in SMOKES} == runnable_modules()


def test_every_benchmark_the_readme_names_has_a_smoke_run() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"python -m bench\.([a-z_0-9]+)", readme))
    assert named, "the README's performance section names no benchmark"
    assert named <= {smoke.module for smoke in SMOKES}


# -- running one ------------------------------------------------------------------------------


def child_env(mark: str, postgres_admin_url: str | None) -> dict[str, str]:
    # RAY_ADDRESS / RAY_GCS_SERVER_PORT could point the benchmark's Ray at the host's port
    # 6379 (Redis runs there): a local ray.init picks free ports without them.
    env = {k: v for k, v in os.environ.items() if k not in {"RAY_ADDRESS", "RAY_GCS_SERVER_PORT"}}
    env["RAY_AUTH_MODE"] = "disabled"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env[MARK] = mark
    if postgres_admin_url is not None:
        env["WFRAY_BENCH_POSTGRES_URL"] = postgres_admin_url
    return env


class BenchmarkFailed(Exception):
    """A benchmark exited non-zero or ran over its time (raised in a worker thread, reported
    by its own test)."""


def run_benchmark(smoke: Smoke, args: list[str], env: dict[str, str], logs: Path) -> str:
    """Run it to the end (killed at its timeout); returns its stdout, fails on a non-zero exit."""
    command = [sys.executable, "-m", f"bench.{smoke.module}", "--json", *args]
    with (logs / "stdout").open("w+") as stdout, (logs / "stderr").open("w+") as stderr:
        try:
            done = subprocess.run(
                command,
                cwd=ROOT,
                env=env,
                stdout=stdout,
                stderr=stderr,
                timeout=smoke.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BenchmarkFailed(
                f"`{' '.join(command[1:])}` ran over {smoke.timeout_s}s; stderr:\n"
                f"{tail(logs / 'stderr')}"
            ) from None
    if done.returncode != 0:
        raise BenchmarkFailed(
            f"`{' '.join(command[1:])}` exited with {done.returncode}; stderr:\n"
            f"{tail(logs / 'stderr')}"
        )
    return (logs / "stdout").read_text(encoding="utf-8")


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-chars:]


def refuses_connections(url: str) -> bool:
    match = re.match(r"http://([^:/]+):(\d+)", url)
    assert match, url
    with socket.socket() as probe:
        probe.settimeout(5)
        return probe.connect_ex((match[1], int(match[2]))) != 0


def has_py_spy() -> bool:
    """Where bench.profile_w1 looks for it: on the PATH or beside the interpreter."""
    return bool(shutil.which("py-spy") or Path(sys.executable).with_name("py-spy").exists())


@dataclass(slots=True)
class Ran:
    """What one benchmark's smoke run left: its stdout and stderr, or why it could not run."""

    smoke: Smoke
    unavailable: tuple[str, str] | None = None  # (service, reason): skipped, or failed in CI
    failure: str | None = None
    stdout: str = ""
    stderr_path: Path | None = None
    left: list[str] | None = None


def prepare(smoke: Smoke, postgres: str | None, logs: Path) -> tuple[list[str], dict[str, str]]:
    args = list(smoke.args)
    if smoke.py_spy:
        args += ["--out", str(logs / "py-spy")]
    return args, child_env(f"bench-smoke-{uuid.uuid4().hex[:12]}", postgres)


def run_one(smoke: Smoke, postgres: str | None, logs: Path) -> Ran:
    """Run one benchmark to its end, then make sure it left no process behind."""
    args, env = prepare(smoke, postgres, logs)
    ran = Ran(smoke, stderr_path=logs / "stderr")
    try:
        ran.stdout = run_benchmark(smoke, args, env, logs)
    except BenchmarkFailed as exc:
        ran.failure = str(exc)
    finally:
        ran.left = kill_marked(env[MARK], grace_s=EXIT_GRACE_S)
    return ran


def why_unavailable(smoke: Smoke, postgres_reachable: bool) -> tuple[str, str] | None:
    # every benchmark imports ray (bench.workloads defines Ray tasks), even the Ray-free one
    if importlib.util.find_spec("ray") is None:
        return ("Ray", "the ray package is not installed")
    if smoke.postgres and not postgres_reachable:
        return ("PostgreSQL", "not reachable: bench.throughput measures it")
    if smoke.py_spy and not has_py_spy():
        return ("py-spy", "bench.profile_w1 samples with it: pip install py-spy")
    return None


@pytest.fixture(scope="module")
def smoke_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Ran]:
    """Every benchmark's smoke run, SMOKE_CONCURRENCY at a time: most of a run is starting and
    stopping its own Ray, which waits more than it computes."""
    try:
        request.getfixturevalue("_postgres_admin")
        postgres_reachable = True
    except pytest.skip.Exception:
        postgres_reachable = False
    postgres = os.environ.get("WFRAY_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    runs: dict[str, Ran] = {}
    jobs = {}
    with ThreadPoolExecutor(max_workers=SMOKE_CONCURRENCY) as pool:
        for smoke in SMOKES:
            reason = why_unavailable(smoke, postgres_reachable)
            if reason is not None:
                runs[smoke.module] = Ran(smoke, unavailable=reason)
                continue
            logs = tmp_path_factory.mktemp(f"bench-{smoke.module}")
            jobs[smoke.module] = pool.submit(
                run_one, smoke, postgres if smoke.postgres else None, logs
            )
        for module, job in jobs.items():
            runs[module] = job.result()
    return runs


@pytest.mark.parametrize("smoke", [smoke_param(smoke) for smoke in SMOKES])
def test_a_benchmark_runs_small_and_prints_its_json(
    smoke: Smoke, smoke_runs: dict[str, Ran]
) -> None:
    ran = smoke_runs[smoke.module]
    if ran.unavailable is not None:
        service_unavailable(*ran.unavailable)
    if ran.failure is not None:
        pytest.fail(ran.failure, pytrace=False)
    assert not ran.left, f"bench.{smoke.module} left processes running: {ran.left}"
    try:
        printed = json.loads(ran.stdout)
    except json.JSONDecodeError as exc:
        pytest.fail(f"bench.{smoke.module} --json printed no JSON ({exc}):\n{ran.stdout[-3000:]}")
    smoke.check(printed)
    if smoke.module == "http_load":
        assert ran.stderr_path is not None
        served = re.findall(r"API served at (\S+)", ran.stderr_path.read_text())
        assert served, "http_load did not say where it served the API"
        assert refuses_connections(served[0]), f"the API at {served[0]} still answers"
