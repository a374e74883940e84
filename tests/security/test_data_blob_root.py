"""On a cluster of several nodes, a blob root that is a folder on one of them is refused
when wfray starts, unless the operator declares it shared (WFRAY_BLOB_ROOT_SHARED).

`ray.cluster_utils.Cluster` needs a driver of its own (the test session may have called
ray.init already), so the scenario runs in a subprocess: this file run with `--scenario`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.cluster.conftest import run_script

SCENARIO_TIMEOUT_S = 180.0


def test_a_node_local_blob_root_is_refused_at_start_on_two_nodes(tmp_path: Path) -> None:
    report = run_script(
        uuid.uuid4().hex,
        Path(__file__),
        "--scenario",
        "--data-dir",
        str(tmp_path / "wfray"),
        timeout_s=SCENARIO_TIMEOUT_S,
    )
    assert report["nodes"] == 2
    refused = report["refused"]
    assert refused["type"] == "BlobRootError", refused
    assert "is a folder, but the Ray cluster has 2 nodes" in refused["message"]
    assert "WFRAY_BLOB_ROOT_SHARED" in refused["message"]
    assert report["coordinator_after_refusal"] is False  # nothing was started
    assert report["shared_started"] is True  # the operator's opt-in lets it start


def scenario(data_dir: str) -> dict[str, Any]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray.cluster_utils import Cluster

    import wfray
    from wfray.adapters.ray.host import COORDINATOR_NAME

    try:
        cluster = Cluster(
            initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
        )
    except Exception as exc:
        print(f"RAY UNAVAILABLE: Cluster failed to start: {exc!r}")
        raise SystemExit(1) from exc
    answer: dict[str, Any] = {}
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes(timeout=60)
        ray.init(address=cluster.address, log_to_driver=False)
        answer["nodes"] = sum(1 for node in ray.nodes() if node["Alive"])
        namespace = "wfray-blob-root"
        settings = wfray.load_settings(data_dir=data_dir, namespace=namespace)
        try:
            wfray.connect(settings)
            answer["refused"] = {"type": None, "message": ""}
        except wfray.WfrayError as exc:
            answer["refused"] = {"type": type(exc).__name__, "message": str(exc)}
        try:
            ray.get_actor(COORDINATOR_NAME, namespace=namespace)
            answer["coordinator_after_refusal"] = True
        except ValueError:
            answer["coordinator_after_refusal"] = False
        client = wfray.connect(settings.with_(blob_root_shared=True))
        answer["shared_started"] = client.stats() is not None
        client.shutdown()
    finally:
        ray.shutdown()
        cluster.shutdown()
    return answer


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", action="store_true")
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    result = scenario(args.data_dir)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
