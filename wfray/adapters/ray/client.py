"""The client over Ray: `wfray.connect()` finds (or starts) the coordinator actor of the
cluster this process is attached to, and `RayClient` sends it commands (link.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import ray

from wfray.adapters.blob import check_blob_root
from wfray.adapters.ray.actors import executor_actor_names
from wfray.adapters.ray.host import COORDINATOR_NAME, executor_name, io_executor_ids
from wfray.adapters.ray.link import CoordinatorLink
from wfray.adapters.ray.runtime_env import current_job_env, uploaded_env
from wfray.application.client_commands import Pid, Start
from wfray.bootstrap import coordinator_actor
from wfray.client.client import Client
from wfray.config import Settings, load_settings
from wfray.domain.code_env import CodeEnv
from wfray.domain.errors import VersionMismatchError, WfrayError


class RayClient(Client):
    """A connection to the wfray coordinator of the current Ray cluster."""

    def __init__(self, settings: Settings, handle: Any = None, *, trusted: bool = False) -> None:
        self.link = CoordinatorLink(settings, handle, trusted)
        self._job_env: tuple[CodeEnv | None] | None = None
        super().__init__(settings, self.link)

    def default_env(self) -> CodeEnv | None:
        """This job's own runtime env (read once: a job's env does not change)."""
        if self._job_env is None:
            self._job_env = (current_job_env(),)
        return self._job_env[0]

    def prepare_env(self, runtime_env: Mapping[str, Any]) -> CodeEnv:
        return uploaded_env(runtime_env)

    @property
    def handle(self) -> Any:
        """The coordinator actor's handle (looked up by name when first needed)."""
        return self.link.handle

    def shutdown(self) -> None:
        """Stop wfray's actors on this cluster. Nothing is lost: runs resume on the next start."""
        namespace = self.settings.namespace
        executors = ["cpu", *io_executor_ids(self.settings)]
        # also the executors of an instance started with more of them
        found = executor_actor_names(namespace)
        names = dict.fromkeys([COORDINATOR_NAME, *(executor_name(e) for e in executors), *found])
        for name in names:
            with contextlib.suppress(ValueError):  # ValueError: it is not running
                ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
        self.link.forget()


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
