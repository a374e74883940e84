"""`wfray start` / `wfray stop`, and how later commands find the wfray they started.

`wfray start --local` spawns a background process (`python -m wfray.entrypoints.cli_instance`)
that starts a private Ray instance with `ray.init(address="local")`: every Ray process of that
instance is its descendant and shares its fate. It starts wfray's actors, registers the user's
workflows, optionally the HTTP API, and records the Ray address and its own PID in
`<data_dir>/instance.json`. `wfray stop` removes wfray's actors, then sends SIGTERM to that
process, which shuts its instance down (`ray.shutdown` stops the processes `ray.init` started,
nothing else); descendants still alive after that (noted before the signal, so a reused PID is
never hit) are killed by PID. `ray stop` is never used: it kills every Ray process on the host.

The local instance keeps Ray's token authentication on: its token lives in
`<data_dir>/ray_auth_token` (mode 0600), and later commands use it through the instance record.
Only `wfray start --local --no-ray-auth` turns it off (then any process on this machine that
reaches the loopback ports can run code in the instance).

On an existing cluster (`--address` or RAY_ADDRESS) `start` only creates wfray's detached actors
and `stop` only removes them; the cluster is not ours to stop.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from rich.console import Console

from wfray.config import Settings, load_settings
from wfray.entrypoints.cli_processes import kill_tree, local_ray_token, use_ray_auth
from wfray.entrypoints.cli_support import CliContext, CliError, Exit, cli_origin, load_workflows

if TYPE_CHECKING:
    from wfray.adapters.ray.client import RayClient

STATE_FILE = "instance.json"
LOG_FILE = "local-ray.log"
API_MODULE = "wfray.entrypoints.http.serve"


@dataclass
class Instance:
    """What `wfray start` left running, as recorded in `<data_dir>/instance.json`."""

    local: bool
    address: str = ""
    namespace: str = "wfray"
    modules: list[str] = field(default_factory=list)
    api: bool = False
    api_url: str = ""
    status: str = "starting"  # starting | ready | failed
    error: str = ""
    pid: int | None = None  # the process that owns the local Ray instance
    pid_created: float | None = None  # its start time: a reused PID is not ours
    ray_auth_token_path: str = ""  # the local instance's Ray token file ("": auth off)
    dashboard_url: str = ""  # the local instance's Ray Dashboard (on loopback)

    def owner(self) -> psutil.Process | None:
        """The owning process if it is still the one we started, else None."""
        if self.pid is None:
            return None
        try:
            process = psutil.Process(self.pid)
            if self.pid_created is not None and abs(process.create_time() - self.pid_created) > 1:
                return None
            return process if process.status() != psutil.STATUS_ZOMBIE else None
        except psutil.NoSuchProcess:
            return None


def state_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / STATE_FILE


def read_instance(settings: Settings) -> Instance | None:
    path = state_path(settings)
    try:
        return Instance(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise CliError(
            f"{path} is not a wfray instance record ({exc}): remove it", Exit.USAGE
        ) from None


def write_instance(path: Path, instance: Instance) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(instance)), encoding="utf-8")
    os.replace(temporary, path)  # atomic: a reader never sees half a record


# -- finding wfray again -------------------------------------------------------------------------


def connect_client(settings: Settings) -> RayClient:
    """A client of the running wfray, without starting one: exit 4 if there is none."""
    missing = f"wfray is not running: no {state_path(settings)} and RAY_ADDRESS is not set; "
    address = running_ray_address(settings, missing + "start it with `wfray start`")
    client = _attach(settings, address)
    client.origin = cli_origin()  # the audit trail's who and where
    return client


def running_ray_address(settings: Settings, missing: str) -> str:
    """The Ray cluster wfray runs on, Ray's token set up as `wfray start` recorded it; exit 4
    with `missing` if none is known, or if wfray's own local instance has died."""
    instance = read_instance(settings)
    if instance is not None and instance.local:
        if instance.owner() is None:
            raise CliError(
                f"wfray's local Ray instance (pid {instance.pid}) is no longer running: "
                "start it again with `wfray start`",
                Exit.UNREACHABLE,
            )
        use_ray_auth(instance.ray_auth_token_path)  # as the instance was started
    address = instance.address if instance else os.environ.get("RAY_ADDRESS", "")
    if not address:
        raise CliError(missing, Exit.UNREACHABLE)
    return address


def init_ray(settings: Settings, address: str) -> None:
    """Attach this process to the Ray cluster at `address`, quietly (CliError if it cannot)."""
    import ray

    try:
        ray.init(
            address=address,
            namespace=settings.namespace,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except Exception as exc:
        raise CliError(f"cannot reach Ray at {address}: {exc}", Exit.UNREACHABLE) from None


def _attach(settings: Settings, address: str) -> RayClient:
    import ray

    from wfray.adapters.ray.client import RayClient
    from wfray.adapters.ray.host import COORDINATOR_NAME

    init_ray(settings, address)
    try:
        handle = ray.get_actor(COORDINATOR_NAME, namespace=settings.namespace)
    except ValueError:
        raise CliError(
            f"wfray is not started on the Ray cluster at {address} (no coordinator in "
            f"namespace {settings.namespace!r}): run `wfray start`",
            Exit.UNREACHABLE,
        ) from None
    return RayClient(settings, handle)


# -- start ---------------------------------------------------------------------------------------


def start(ctx: CliContext, args: argparse.Namespace) -> int:
    modules = list(dict.fromkeys([*ctx.settings.modules, *args.module]))
    settings = ctx.settings.with_(
        modules=tuple(modules),
        api_host=args.api_host or ctx.settings.api_host,
        api_port=args.api_port or ctx.settings.api_port,
    )
    flows = load_workflows(modules)  # fail here, fast, on a module that does not import
    if args.api:
        api_starter()
    existing = read_instance(settings)
    if existing is not None and existing.local and existing.owner() is not None:
        raise CliError(
            f"wfray already runs on a local Ray instance at {existing.address} "
            f"(pid {existing.pid}): stop it first with `wfray stop`",
            Exit.RUN_FAILED,
        )
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    address = args.address or ("" if args.local else os.environ.get("RAY_ADDRESS", ""))
    if address:
        instance = _start_on_cluster(settings, address, args.api)
    else:
        instance = _start_local(settings, args)
    names = ", ".join(sorted(flow.name for flow in flows)) or "none"
    where = "a local Ray instance" if instance.local else "the Ray cluster"
    ctx.console.print(f"wfray started on {where} at {instance.address}; workflows: {names}")
    if instance.local:
        auth = instance.ray_auth_token_path
        ctx.console.print(
            f"Ray token authentication: on (token in {auth})"
            if auth
            else "Ray token authentication: OFF (--no-ray-auth): any local process can run code"
        )
    if instance.api_url:
        ctx.console.print(f"HTTP API: {instance.api_url}")
    if instance.dashboard_url:
        ctx.console.print(f"Ray Dashboard: {instance.dashboard_url}")
    return Exit.OK


def api_starter() -> Any:
    """`start_api(settings)` of the HTTP API, or a clear error if this wfray has none."""
    try:
        start_api = importlib.import_module(API_MODULE).start_api
    except (ImportError, AttributeError) as exc:
        raise CliError(
            f"cannot start the HTTP API: {API_MODULE}.start_api is not importable ({exc})",
            Exit.RUN_FAILED,
        ) from None
    return start_api


def start_wfray(settings: Settings, api: bool) -> str:
    """On the Ray cluster this process is attached to: wfray's actors, the user's
    workflows registered, and the HTTP API if asked."""
    from wfray.adapters.ray.connect import connect

    flows = load_workflows(settings.modules)
    client = connect(settings)
    if flows:
        client.register(*flows)
    return str(api_starter()(settings)) if api else ""


def _start_on_cluster(settings: Settings, address: str, api: bool) -> Instance:
    import ray

    try:
        ray.init(address=address, namespace=settings.namespace, logging_level=logging.WARNING)
    except Exception as exc:
        raise CliError(f"cannot reach Ray at {address}: {exc}", Exit.UNREACHABLE) from None
    try:
        api_url = start_wfray(settings, api)
    finally:
        ray.shutdown()  # wfray's actors are detached: they outlive this driver
    instance = Instance(
        local=False,
        address=address,
        namespace=settings.namespace,
        modules=list(settings.modules),
        api=api,
        api_url=api_url,
        status="ready",
    )
    write_instance(state_path(settings), instance)
    return instance


def _start_local(settings: Settings, args: argparse.Namespace) -> Instance:
    path = state_path(settings)
    write_instance(path, Instance(local=True, namespace=settings.namespace, status="starting"))
    options = {
        "modules": list(settings.modules),
        "api": bool(args.api),
        "api_host": settings.api_host,
        "api_port": settings.api_port,
        "num_cpus": args.num_cpus,
        "object_store_mb": args.object_store_mb,
        "ray_auth": not args.no_ray_auth,
    }
    log_path = path.with_name(LOG_FILE)
    with log_path.open("ab") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", __name__, str(path), json.dumps(options)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # the shell's Ctrl-C and hang-up do not reach it
        )
    deadline = time.monotonic() + args.timeout
    while True:
        instance = read_instance(settings)
        if instance is not None and instance.status == "ready":
            return instance
        failed = instance is not None and instance.status == "failed"
        exit_code = daemon.poll()
        if failed or exit_code is not None or time.monotonic() > deadline:
            reason = f"it did not become ready within {args.timeout:.0f}s"
            if failed and instance is not None:
                reason = instance.error
            elif exit_code is not None:
                reason = f"it exited with code {exit_code}"
            if daemon.poll() is None:  # take down what it started so far
                kill_tree(psutil.Process(daemon.pid))
            raise CliError(
                f"the local Ray instance did not start: {reason} (log: {log_path})",
                Exit.UNREACHABLE,
            )
        time.sleep(0.2)


def run_local_instance(path: Path, options: dict[str, Any]) -> int:
    """The background process behind `wfray start --local`: owns a Ray instance until SIGTERM."""
    token_path = str(local_ray_token(path.parent)) if options.get("ray_auth", True) else ""
    use_ray_auth(token_path)  # on unless `--no-ray-auth` asked otherwise
    import ray

    settings = load_settings().with_(
        modules=tuple(options["modules"]),
        api_host=options["api_host"],
        api_port=options["api_port"],
    )
    stopping = threading.Event()
    me = psutil.Process()
    instance = Instance(
        local=True,
        namespace=settings.namespace,
        modules=list(settings.modules),
        api=options["api"],
        pid=me.pid,
        pid_created=me.create_time(),
        ray_auth_token_path=token_path,
    )
    try:
        store_mb = options.get("object_store_mb")
        context = ray.init(
            address="local",
            _node_ip_address="127.0.0.1",
            num_cpus=options.get("num_cpus"),
            resources={"io": 4},
            # the Ray Dashboard shows wfray's actors and named tasks; loopback only
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            log_to_driver=False,
            namespace=settings.namespace,
            object_store_memory=None if store_mb is None else int(store_mb) * 1024**2,
        )
        # after ray.init, which installs its own SIGTERM handler (sys.exit)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        instance.address = ray.get_runtime_context().gcs_address
        if context.dashboard_url:
            instance.dashboard_url = f"http://{context.dashboard_url}"
        instance.api_url = start_wfray(settings, options["api"])
        instance.status = "ready"
        write_instance(path, instance)
        while not stopping.wait(1.0):
            pass
        return 0
    except BaseException as exc:
        traceback.print_exc()
        instance.status, instance.error = "failed", f"{type(exc).__name__}: {exc}"
        write_instance(path, instance)
        return 1
    finally:
        ray.shutdown(wait_for_processes=True)


# -- stop ----------------------------------------------------------------------------------------


def stop(ctx: CliContext, args: argparse.Namespace) -> int:
    instance = read_instance(ctx.settings)
    if instance is None:
        raise CliError(
            f"nothing to stop: no {state_path(ctx.settings)} (wfray was not started here)",
            Exit.UNREACHABLE,
        )
    owner = instance.owner() if instance.local else None
    if owner is not None or not instance.local:
        import ray

        with contextlib.suppress(CliError):
            connect_client(ctx.settings).shutdown()
            _stop_api(instance, ctx.console)
        ray.shutdown()  # disconnect before the instance goes away under us
    if owner is not None:
        kill_tree(owner)
    state_path(ctx.settings).unlink(missing_ok=True)
    what = "and its local Ray instance " if instance.local else ""
    ctx.console.print(f"wfray {what}stopped ({instance.address or 'never started'})")
    return Exit.OK


def _stop_api(instance: Instance, console: Console) -> None:
    """On a cluster that is not ours, the API's Serve application must go explicitly."""
    if not instance.api or instance.local:
        return
    module = importlib.import_module(API_MODULE)  # lazy: it imports Ray Serve
    stop_api = getattr(module, "stop_api", None)
    if stop_api is None:
        console.print(f"note: {API_MODULE} has no stop_api(); the HTTP API is left running")
    else:
        stop_api(getattr(module, "APP_NAME", None))  # only ours: other Serve apps stay


if __name__ == "__main__":
    sys.exit(run_local_instance(Path(sys.argv[1]), json.loads(sys.argv[2])))
