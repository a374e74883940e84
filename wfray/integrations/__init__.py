"""Built-in tasks any user can enqueue by name without writing a step.

    http_request   one HTTP call (io pool); 429/5xx retried honouring Retry-After
    send_email     one message over SMTP with attachments (io pool)
    render_pdf     a registered reportlab template plus data -> PDF (cpu pool)

They are plain functions declared with `wfray.task`, so a user's own steps may also call
them (or the helpers beside them: `send_message`, `render_document`) directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wfray.integrations.email import send_email
from wfray.integrations.http import http_request
from wfray.integrations.pdf import render_pdf

# The coordinator registers these at start, so they can be submitted by name.
BUILTIN_TASKS: tuple[Callable[..., Any], ...] = (http_request, send_email, render_pdf)

__all__ = ["BUILTIN_TASKS", "http_request", "render_pdf", "send_email"]
