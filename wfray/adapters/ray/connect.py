"""`wfray.connect()`: find (or start) the coordinator actor of the Ray cluster this process is
attached to, through the composition root, and return a RayClient for it."""

from __future__ import annotations

from typing import Any

import ray

from wfray.adapters.blob import check_blob_root
from wfray.adapters.ray.client import RayClient
from wfray.application.client_commands import Pid, Start
from wfray.bootstrap import coordinator_actor
from wfray.config import Settings, load_settings
from wfray.domain.errors import VersionMismatchError, WfrayError

CONNECT_TIMEOUT_S = 120.0


def connect(settings: Settings | None = None, **overrides: Any) -> RayClient:
    """Connect to (or start) wfray on the Ray cluster this process is attached to."""
    settings = settings or load_settings(**overrides)
    if not ray.is_initialized():
        ray.init(namespace=settings.namespace)
    alive = sum(1 for node in ray.nodes() if node.get("Alive"))
    check_blob_root(settings.blob_root, settings.blob_root_shared, alive)
    handle = coordinator_actor(settings)
    client = RayClient(settings, handle)
    # one found by name may run another wfray: refused before anything is sent or stopped
    client.call(Pid(), timeout_s=CONNECT_TIMEOUT_S)  # the link checks versions first
    try:
        # the start waits nearly as long as the call may: on a loaded cluster, creating the
        # actors and migrating the store can take far longer than on an idle one
        client.call(Start(CONNECT_TIMEOUT_S - 10), timeout_s=CONNECT_TIMEOUT_S)
    except VersionMismatchError:
        raise  # its executors run another wfray: stopping them is the operator's call
    except WfrayError:
        client.shutdown()  # do not leave a coordinator retrying a start that cannot succeed
        raise
    return client
