"""The loopback-only rule holds for the address Serve's proxy really listens on.

Serve's proxy is one per Ray cluster and keeps the address of its first start, so this
runs in a Ray instance of its own (a subprocess): the proxy is started on 0.0.0.0 by a
first app with a token, then a token-less app configured for 127.0.0.1 is added to it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import free_port

SCRIPT = textwrap.dedent(
    """
    import sys
    import ray
    from ray import serve
    import wfray
    from wfray.domain.errors import DefinitionError
    from wfray.entrypoints.http.serve import start_api

    data_dir, port = sys.argv[1], int(sys.argv[2])
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        settings = wfray.load_settings(
            data_dir=data_dir, namespace="wfray-bind", api_port=port, modules=()
        )
        public = settings.with_(api_host="0.0.0.0", api_token="a-token-for-the-public-app")
        url = start_api(public, app_name="public")
        print("PUBLIC", url, flush=True)
        try:
            url = start_api(settings.with_(api_port=port + 1), app_name="private")
        except DefinitionError as exc:
            print("REFUSED", exc, flush=True)
        else:
            print("SERVED", url, flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    """
)


def test_a_tokenless_app_is_not_added_to_a_proxy_listening_beyond_loopback(
    tmp_path: Path,
) -> None:
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(port)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"PUBLIC http://0.0.0.0:{port}" in out, out
    assert "SERVED" not in out, out
    refused = out.split("REFUSED", 1)[1]
    assert "'0.0.0.0'" in refused and "not on loopback" in refused
    assert "WFRAY_API_TOKEN" in refused
