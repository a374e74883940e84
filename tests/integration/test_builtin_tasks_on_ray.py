"""The built-in tasks can be enqueued by name from a Python client."""

from __future__ import annotations

import base64
import io
from typing import Any

from pypdf import PdfReader

import wfray.integrations  # noqa: F401  (declares the built-in tasks in this process)
from wfray.application.client_commands import Workflows
from wfray.domain.status import RunStatus


def test_a_builtin_task_runs_by_name(client: Any) -> None:
    data = {"title": "Stock", "rows": [["bolts", "12"], ["nuts", "30"]], "columns": ["item", "n"]}
    run = client.submit("render_pdf", {"template": "table", "data": data, "title": "Stock"})
    (view,) = client.wait([run.run_id], timeout=60)
    assert view.status is RunStatus.COMPLETED, view.error
    names = {schema.name for schema in client.call(Workflows())}
    assert "render_pdf" in names  # the client registered what it submitted
    document = run.result(timeout=10)
    pdf = base64.b64decode(document.content_base64)
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert "Stock" in text and "bolts" in text and "nuts" in text
