"""`wfray upgrade`: the store migrated and wfray's actors started again on this wfray,
without losing or repeating a run (adapters/ray/upgrade.py says how).

It runs where the new wfray is installed, against the Ray cluster wfray runs on (the
instance `wfray start` recorded, else RAY_ADDRESS). `POST /v1/upgrade` (admin) does the same
from the HTTP API's replica, to the wfray that replica runs (entrypoints/http/upgrade.py).
"""

from __future__ import annotations

import argparse
import json

from rich.console import Console

from wfray.config import Settings
from wfray.entrypoints.cli_instance import init_ray, running_ray_address, state_path
from wfray.entrypoints.cli_support import CliContext, CliError, Exit, cli_origin

DRAIN_TIMEOUT_S = 600.0


def _ray_address(settings: Settings) -> str:
    """The cluster wfray runs on, Ray's token set up as `wfray start` recorded it."""
    return running_ray_address(
        settings,
        f"no Ray cluster to upgrade wfray on: no {state_path(settings)} and RAY_ADDRESS "
        "is not set (`wfray db upgrade` migrates the store alone)",
    )


def _progress(ctx: CliContext, args: argparse.Namespace, line: str) -> None:
    """A step of the upgrade as it happens (on stderr with --json: stdout stays JSON)."""
    console = ctx.console if not args.json else Console(stderr=True)
    console.print(line, highlight=False, markup=False)
    console.file.flush()


def upgrade(ctx: CliContext, args: argparse.Namespace) -> int:
    import ray

    from wfray.entrypoints.upgrading import upgrade_here

    settings = ctx.settings
    init_ray(settings, _ray_address(settings))
    try:
        report = upgrade_here(
            settings,
            cli_origin(),
            args.timeout,
            restart=args.restart,
            say=lambda line: _progress(ctx, args, line),
        )
    except ray.exceptions.RayError as exc:  # an actor died or did not answer meanwhile
        raise CliError(
            f"Ray failed during the upgrade ({type(exc).__name__}: {str(exc)[:500]}): run "
            "`wfray upgrade` again to finish it",
            Exit.UNREACHABLE,
        ) from None
    finally:
        ray.shutdown()  # the new actors are detached: they outlive this driver
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        for line in report.lines():
            ctx.console.print(line, highlight=False, markup=False)
    return Exit.OK
