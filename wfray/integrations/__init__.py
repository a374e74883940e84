"""Built-in tasks a Python client can enqueue by name without writing a step.

    http_request   one HTTP call (io pool); 429/5xx retried honouring Retry-After
    send_email     one message over SMTP with attachments (io pool)
    render_pdf     a registered reportlab template plus data -> PDF (cpu pool)

They are plain functions declared with `wfray.task`, so a user's own steps may also call
them (or the helpers beside them: `send_message`, `render_document`) directly. They act
with the cluster's network, mail server and credentials, so the HTTP API starts only those
the operator lists in WFRAY_API_TASKS (none by default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wfray.integrations.email import send_email
from wfray.integrations.http import http_request
from wfray.integrations.pdf import render_pdf

# Known by name to wfray.entrypoints.http.catalog, which keeps them closed over HTTP.
BUILTIN_TASKS: tuple[Callable[..., Any], ...] = (http_request, send_email, render_pdf)

__all__ = ["BUILTIN_TASKS", "http_request", "render_pdf", "send_email"]
