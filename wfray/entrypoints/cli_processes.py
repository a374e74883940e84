"""What `wfray start --local` and `wfray stop` need of the host: the local instance's Ray
token, Ray's authentication set up for this process, and stopping a process tree."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import psutil

RAY_TOKEN_FILE = "ray_auth_token"
STOP_GRACE_S = 30.0


def use_ray_auth(token_path: str) -> None:
    """Set this process up for Ray's token authentication with the token in `token_path`,
    or with authentication off when it is empty; before Ray is imported."""
    if token_path:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN_PATH"] = token_path
        os.environ.pop("RAY_AUTH_TOKEN", None)  # it would win over the file
    else:
        os.environ["RAY_AUTH_MODE"] = "disabled"
    raylet: Any = sys.modules.get("ray._raylet")
    if raylet is not None:  # Ray read its config at import: make it read it again
        raylet.Config.initialize("")
        raylet.AuthenticationTokenLoader.instance().reset_cache()


def local_ray_token(data_dir: Path) -> Path:
    """The local instance's Ray token file, made once (256 random bits, readable only by
    its owner) and kept across restarts."""
    path = data_dir / RAY_TOKEN_FILE
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_hex(32))
    return path


def kill_tree(owner: psutil.Process) -> None:
    """SIGTERM the owner (it shuts its Ray instance down), then SIGKILL what survives of the
    processes that were its descendants when we looked."""
    try:
        family = [owner, *owner.children(recursive=True)]
        owner.terminate()
    except psutil.NoSuchProcess:
        return
    _, alive = psutil.wait_procs([owner], timeout=STOP_GRACE_S)
    descendants = [p for p in family[1:] if p.is_running()]
    _, alive = psutil.wait_procs([*alive, *descendants], timeout=5)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=5)
