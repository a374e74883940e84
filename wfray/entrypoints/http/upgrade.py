"""`POST /v1/upgrade` (admin): `wfray upgrade` from the API's replica, to the wfray that
replica runs. Deploy the API on the new wfray first (as `wfray start --api` or `serve.run`
does), then call it: the store is migrated, the coordinator and executors are drained and
started again on the replica's wfray, no run lost or repeated (adapters/ray/upgrade.py).
The answer comes when it is done (it waits up to `timeout_s` for running attempts): a drain
past that answers 504 `wait_timeout`, with the coordinator stopped and nothing lost; call
it again to go on.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from wfray.config import Settings
from wfray.entrypoints.http.audit import http_origin
from wfray.entrypoints.upgrading import upgrade_here

MAX_TIMEOUT_S = 3600.0


class UpgradeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(600.0, gt=0, le=MAX_TIMEOUT_S)
    restart: bool = False  # replace actors that report this wfray's version too


def upgrade_routes(router: APIRouter, settings: Settings, needs: Any) -> None:
    @router.post("/upgrade", tags=["operations"], dependencies=[needs("admin")])
    def upgrade(body: UpgradeBody, request: Request) -> dict[str, Any]:
        """Migrate the store and move the coordinator and executors to this wfray."""
        report = upgrade_here(settings, http_origin(request), body.timeout_s, restart=body.restart)
        return {**report.as_dict(), "lines": report.lines()}
