"""`wfray backup DIR` and `wfray restore DIR` (the work is in adapters/backup.py).

Both go to the store and the blob root directly, like the read commands: a backup needs no
Ray and is safe while wfray runs; a restore is refused while the wfray recorded in the data
folder runs on it (stop it first: the coordinator's memory would contradict the store).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wfray.entrypoints.cli_instance import read_instance, state_path
from wfray.entrypoints.cli_support import CliContext, CliError, Exit, plain, print_json
from wfray.entrypoints.cli_text import printable


def backup(ctx: CliContext, args: argparse.Namespace) -> int:
    from wfray.adapters.backup import take_backup

    manifest = take_backup(ctx.settings, Path(args.folder))
    if args.json:
        print_json(plain(manifest) | {"total_bytes": manifest.total_bytes})
        return Exit.OK
    ctx.console.print(
        f"backed up {manifest.database} store (schema {', '.join(manifest.schema_revisions)}) "
        f"and {len(manifest.files) - 1} blob files, {manifest.total_bytes} bytes, "
        f"into {printable(str(Path(args.folder).absolute()))}",
        markup=False,
        highlight=False,
    )
    return Exit.OK


def restore(ctx: CliContext, args: argparse.Namespace) -> int:
    from wfray.adapters.backup import restore_backup

    instance = read_instance(ctx.settings)
    if instance is not None and instance.local and instance.owner() is not None:
        raise CliError(
            f"wfray runs on this store (pid {instance.pid}, {state_path(ctx.settings)}): "
            "stop it with `wfray stop` before restoring",
            Exit.RUN_FAILED,
        )
    manifest = restore_backup(ctx.settings, Path(args.folder), force=args.force)
    if args.json:
        print_json(plain(manifest) | {"total_bytes": manifest.total_bytes})
        return Exit.OK
    ctx.console.print(
        f"restored the backup of {manifest.created_at} (wfray {manifest.wfray_version}, "
        f"{len(manifest.files) - 1} blob files); start wfray to finish the runs it holds",
        markup=False,
        highlight=False,
    )
    return Exit.OK
