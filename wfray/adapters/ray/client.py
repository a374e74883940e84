"""The client over Ray: `RayClient` sends the coordinator actor commands (link.py);
`wfray.connect()` (connect.py) finds or starts that actor and returns one."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import ray

from wfray.adapters.ray.host import (
    COORDINATOR_NAME,
    executor_actor_names,
    executor_name,
    io_executor_ids,
)
from wfray.adapters.ray.link import CoordinatorLink
from wfray.adapters.ray.runtime_env import current_job_env, uploaded_env
from wfray.client.client import Client
from wfray.config import Settings
from wfray.domain.code_env import CodeEnv


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
