"""The HTTP API on Ray Serve: one deployment wrapping the FastAPI app.

    start_api(settings)   # serves http://{api_host}:{api_port}{api_route_prefix}
    stop_api()            # shuts Serve down

The app is built inside the replica (`__serve_build_asgi_app__`), after the replica has
imported the user's workflow modules, so nothing of the driver's FastAPI app is pickled.
"""

from __future__ import annotations

import importlib.util
import ipaddress
from typing import Any

from fastapi import FastAPI
from ray import serve

from wfray.config import Settings
from wfray.domain.errors import DefinitionError
from wfray.entrypoints.http.app import create_app
from wfray.entrypoints.http.catalog import check_api_tasks

APP_NAME = "wfray-api"


@serve.deployment(
    name="WfrayApi",
    # The replica waits on the coordinator; it needs no CPU of its own (2-core machines).
    ray_actor_options={"num_cpus": 0},
    # Serve's default (5) would let a few followed log streams hold every slot; requests
    # here mostly wait on the coordinator, so many can be in flight at once.
    max_ongoing_requests=64,
)
@serve.ingress()
class WfrayApi:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.settings)


def start_api(settings: Settings, app_name: str = APP_NAME) -> str:
    """Serve the API on the current Ray cluster; returns its base URL.

    Serve's HTTP proxy is shared by every Serve application of the cluster: the first
    start fixes its host and port, later apps only add route prefixes.
    """
    check_bind(settings.api_host, settings.api_token)
    check_modules(settings.modules)
    check_api_tasks(settings.api_tasks)
    prefix = normalise_prefix(settings.api_route_prefix)
    serve.start(
        http_options={"host": settings.api_host, "port": settings.api_port},
        proxy_location="HeadOnly",
    )
    application: Any = WfrayApi.bind(settings)  # type: ignore[attr-defined]
    serve.run(application, name=app_name, route_prefix=prefix)
    host = f"[{settings.api_host}]" if ":" in settings.api_host else settings.api_host
    return f"http://{host}:{settings.api_port}{prefix.rstrip('/')}"


def stop_api(app_name: str | None = None) -> None:
    """Remove one API application, or (by default) shut Serve down altogether."""
    if app_name is None:
        serve.shutdown()
    else:
        serve.delete(app_name)


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve without a token on any address other than loopback."""
    if token:
        return
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        loopback = False
    if not loopback:
        raise DefinitionError(
            f"refusing to serve the HTTP API on {host!r} without a token: set WFRAY_API_TOKEN "
            "(every /v1 request then needs `Authorization: Bearer <token>`) or listen on "
            "127.0.0.1"
        )


def check_modules(modules: tuple[str, ...]) -> None:
    """Fail here, clearly, rather than in a replica that Serve would restart in a loop."""
    for name in modules:
        try:
            found = importlib.util.find_spec(name)
        except ImportError as exc:  # its parent package is missing
            found = None
            reason = str(exc)
        else:
            reason = "no such module"
        if found is None:
            raise DefinitionError(
                f"WFRAY_MODULES names {name!r}, which cannot be imported: {reason} "
                "(expected importable module paths, comma-separated, like 'shop.flows')"
            )


def normalise_prefix(prefix: str) -> str:
    """Serve wants "/" or "/name" (no trailing slash)."""
    cleaned = "/" + prefix.strip().strip("/")
    return cleaned
