"""Shared parts of the integrations' attack tests: a user module that merely imports the
built-in tasks, and the API served by real Ray Serve on loopback.

The module doubles as the user's workflow module of the served API (WFRAY_MODULES), so its
imports are what an operator's module would hold.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

import wfray
from tests.api.conftest import wait_until_served
from tests.conftest import free_port
from wfray.integrations import http_request, send_email  # noqa: F401  (merely imported)
from wfray.integrations.pdf import render_pdf  # noqa: F401  (merely imported)
from wfray.sdk.secrets import SecretRef


@wfray.task(pool="io")
def echo(text: str) -> str:
    """The user's own task: the API starts it."""
    return text


@wfray.task(pool="io")
def call_with_secret(url: str, key: SecretRef, fail: bool = False) -> str:
    """A user's step holding a secret by name: it logs and fails carelessly with the value."""
    value = key.resolve()
    log = logging.getLogger("shop.client")
    log.warning("calling %s with Authorization: Bearer %s", url, value)
    log.warning("key in a dict: %s", {"api_key": value, "cookie": "sid=abc123"})
    body = httpx.get(url, headers={"Authorization": f"Bearer {value}"}, timeout=10).text
    if fail:
        raise RuntimeError(f"upstream refused key {value} at https://bob:hunter2@{url[7:]}")
    return body


@dataclass
class Served:
    """One wfray instance and the API apps served for it (name -> base URL)."""

    client: Any
    settings: Any
    urls: dict[str, str]


def connect(tmp_dir: str, **changes: Any) -> Any:
    """wfray on the session's Ray, in a namespace of its own."""
    settings = wfray.load_settings(
        data_dir=tmp_dir, namespace=f"wfray-sec-{uuid.uuid4().hex[:8]}", **changes
    )
    return wfray.connect(settings)


def serve_apps(tmp_dir: str, apps: dict[str, dict[str, Any]]) -> Iterator[Served]:
    """wfray on the session's Ray, and one Serve app per entry (its settings changes).

    Serve's proxy is shared by the whole Ray session: when another tier has started it
    already, its real port is read back, and only the apps added here are removed after.
    """
    from ray import serve

    from wfray.entrypoints.http.serve import start_api

    settings = wfray.load_settings(
        data_dir=tmp_dir,
        namespace=f"wfray-sec-{uuid.uuid4().hex[:8]}",
        modules=(__name__,),
        api_port=free_port(),
    )
    was_running = serve.context._get_global_client(raise_if_no_controller_running=False)
    client = wfray.connect(settings)
    names = [f"wfray-sec-{name}-{uuid.uuid4().hex[:6]}" for name in apps]
    try:
        urls: dict[str, str] = {}
        for (key, changes), app_name in zip(apps.items(), names, strict=True):
            app_settings = settings.with_(api_route_prefix=f"/{key}", **changes)
            start_api(app_settings, app_name=app_name)
            urls[key] = f"http://127.0.0.1:{proxy_port()}/{key}"
            wait_until_served(urls[key])
        yield Served(client, settings, urls)
    finally:
        try:
            if was_running is None:
                serve.shutdown()
            else:
                for app_name in names:
                    serve.delete(app_name)
        finally:
            client.shutdown()


def proxy_port() -> int:
    """The port Serve's proxy really listens on (the first start fixed it)."""
    import ray
    from ray import serve

    controller = serve.context._get_global_client()._controller
    return int(ray.get(controller.get_http_config.remote()).port)
