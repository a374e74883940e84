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

from wfray.adapters.ray.actors import api_deployment
from wfray.config import Settings
from wfray.domain.errors import DefinitionError
from wfray.entrypoints.http.app import create_app
from wfray.entrypoints.http.catalog import check_api_tasks

APP_NAME = "wfray-api"


class WfrayApi:
    """The API replica's body; its Serve deployment is made in adapters/ray/actors.py."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.settings)


def start_api(settings: Settings, app_name: str = APP_NAME) -> str:
    """Serve the API on the current Ray cluster; returns its base URL.

    Serve's HTTP proxy is shared by every Serve application of the cluster: the first
    start fixes its host and port, later apps only add route prefixes. So the loopback
    rule is checked twice: on the configured host before the proxy starts, and on the
    address the running proxy really listens on before the app is added to it.
    """
    has_token = bool(settings.api_token or settings.api_tokens)
    check_bind(settings.api_host, has_token)
    check_modules(settings.modules)
    check_api_tasks(settings.api_tasks)
    prefix = normalise_prefix(settings.api_route_prefix)
    serve.start(
        http_options={"host": settings.api_host, "port": settings.api_port},
        proxy_location="HeadOnly",
    )
    host, port = proxy_address()
    if not has_token and not is_loopback(host):
        raise DefinitionError(
            f"refusing to add the HTTP API without a token to Serve's proxy, which already "
            f"listens on {host!r} (port {port}), not on loopback as configured "
            f"({settings.api_host!r}): set WFRAY_API_TOKEN or WFRAY_API_TOKENS"
        )
    application: Any = api_deployment(WfrayApi).bind(settings)
    serve.run(application, name=app_name, route_prefix=prefix)
    shown = settings.api_host if _is_wildcard(host) else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}{prefix.rstrip('/')}"


def proxy_address() -> tuple[str, int]:
    """The host and port Serve's running HTTP proxy listens on (the first start's)."""
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    if client is None:
        raise DefinitionError("Ray Serve is not running: its proxy has no address")
    options = client.http_config
    return str(options.host), int(options.port)


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def stop_api(app_name: str | None = None) -> None:
    """Remove one API application, or (by default) shut Serve down altogether."""
    if app_name is None:
        serve.shutdown()
    else:
        serve.delete(app_name)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_bind(host: str, token: str | bool | None) -> None:
    """Refuse to serve without a token on any address other than loopback."""
    if token:
        return
    if not is_loopback(host):
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
