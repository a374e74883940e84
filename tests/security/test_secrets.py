"""Item 7 of issue 13, first part: secrets by name, and what is masked where people read.

A run input holds `{"secret": "SHOP_API_KEY"}`; the worker resolves it from the secret
folder the operator configured (or WFRAY_SECRET_<NAME> in its environment). The value
never reaches the store, and a step that logs it, or fails with it in its message, leaves
only *** behind; the result the step returned is stored as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.security._integrations_support import call_with_secret, connect
from wfray.domain.errors import SecretNotFoundError
from wfray.domain.status import RunStatus
from wfray.sdk.secrets import (
    SecretRef,
    resolve_secret,
    resolved_values,
)

KEY = "sk-live-4f1d9a7c2b"


@dataclass
class Upstream:
    """A loopback HTTP server that records the Authorization headers it receives."""

    url: str = ""
    seen: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    record = Upstream()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            record.seen.append(self.headers.get("Authorization", ""))
            body = f"hello {self.headers.get('Authorization', '')}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    record.url = f"http://127.0.0.1:{server.server_address[1]}/orders"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield record
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture(scope="module")
def client(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("wfray-sec-secrets")
    (root / "secrets").mkdir()
    (root / "secrets" / "SHOP_API_KEY").write_text(KEY + "\n")
    wf = connect(str(root / "wfray"), secret_dir=str(root / "secrets"))
    try:
        yield wf
    finally:
        wf.shutdown()


def _finished(client: Any, run_id: str) -> Any:
    (view,) = client.wait([run_id], timeout=60)
    assert view.status.finished, view
    return client.detail(run_id)


def test_a_secret_by_name_reaches_the_step_and_never_the_store(
    client: Any, upstream: Upstream
) -> None:
    ref = {"secret": "SHOP_API_KEY"}
    run = client.submit(call_with_secret, {"url": upstream.url, "key": ref})
    detail = _finished(client, run.run_id)

    assert detail.run.status is RunStatus.COMPLETED, detail.run.error
    assert upstream.seen[-1] == f"Bearer {KEY}"  # resolved on the worker, from the folder
    assert '"secret":"SHOP_API_KEY"' in detail.run.input_json.replace(" ", "")
    assert KEY not in detail.run.input_json
    assert run.result(timeout=10) == f"hello Bearer {KEY}"  # results are never altered
    lines = [line.message for line in client.logs(run.run_id)]
    assert any("Authorization: ***" in line for line in lines), lines
    assert not any(KEY in line or "abc123" in line for line in lines), lines


def test_an_error_carrying_the_secret_is_stored_masked(client: Any, upstream: Upstream) -> None:
    ref = {"secret": "SHOP_API_KEY"}
    run = client.submit(call_with_secret, {"url": upstream.url, "key": ref, "fail": True})
    detail = _finished(client, run.run_id)

    assert detail.run.status is RunStatus.FAILED
    texts = [detail.run.error or ""]
    for attempt in detail.attempts:
        texts += [attempt.error_message or "", attempt.traceback or ""]
    assert all(KEY not in text and "hunter2" not in text for text in texts), texts
    assert "upstream refused key *** at https://bob:***@" in (
        detail.attempts[0].error_message or ""
    )


def test_a_secret_the_worker_lacks_fails_for_good_naming_the_sources(client: Any) -> None:
    run = client.submit(call_with_secret, {"url": "http://x", "key": {"secret": "NOT_THERE"}})
    detail = _finished(client, run.run_id)

    assert detail.run.status is RunStatus.FAILED
    assert len(detail.attempts) == 1  # not retried
    assert "secret 'NOT_THERE' is not configured on this worker" in (detail.run.error or "")
    assert "WFRAY_SECRET_NOT_THERE" in (detail.run.error or "")


def test_sources_in_order_env_then_folder(tmp_path: Path) -> None:
    (tmp_path / "DB_PASSWORD").write_text("from-the-folder\n")
    env = {"WFRAY_SECRET_DIR": str(tmp_path)}
    assert resolve_secret("DB_PASSWORD", env) == "from-the-folder"
    env["WFRAY_SECRET_DB_PASSWORD"] = "from-the-env"
    assert resolve_secret("DB_PASSWORD", env) == "from-the-env"
    assert {"from-the-folder", "from-the-env"} <= resolved_values()
    with pytest.raises(SecretNotFoundError, match="secret 'OTHER' is not configured"):
        resolve_secret("OTHER", env)
    # no other variable of the environment is a secret: only WFRAY_SECRET_<NAME>
    with pytest.raises(SecretNotFoundError):
        resolve_secret("HOME", {"HOME": "/root"})


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "KEY.txt", "", "1ABC"])
def test_a_name_is_never_a_path(name: str, tmp_path: Path) -> None:
    with pytest.raises(SecretNotFoundError, match="is not a secret name"):
        resolve_secret(name, {"WFRAY_SECRET_DIR": str(tmp_path)})
    with pytest.raises(ValidationError):
        SecretRef(secret=name)
