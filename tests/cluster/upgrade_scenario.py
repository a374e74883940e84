"""The drivers of tests/cluster/test_upgrade_from_previous_commit.py, one process each.

`old`: run with an earlier commit's wfray first on PYTHONPATH; starts wfray on the cluster
(its actors then run that wfray), submits runs of tests/fixtures/upgrade_flows.py and
returns once two io steps and two cpu steps hold mid-step with more runs queued behind.
`new`: run with this commit's wfray after `wfray upgrade`; waits for every run and answers
what the store holds of them. Both print one JSON line last. Only what both commits' wfray
offer is used here.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

WAIT_S = 120.0


def started(journal: Path, run_ids: set[str], step: str) -> int:
    if not journal.exists():
        return 0
    lines = [line.split() for line in journal.read_text().splitlines()]
    return sum(1 for parts in lines if parts[0] in run_ids and parts[1] == step)


def wait_for(what: str, check: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {WAIT_S}s")
        time.sleep(0.05)


def connect(data_dir: str, namespace: str) -> Any:
    import ray

    import wfray

    ray.init(address=os.environ["RAY_ADDRESS"], namespace=namespace, log_to_driver=False)
    return wfray.connect(wfray.load_settings(data_dir=data_dir, namespace=namespace))


def executor_methods(namespace: str) -> dict[str, bool]:
    """Per executor: whether it has `adopt` (only this commit's executors have it)."""
    import ray

    found = ray.util.list_named_actors(all_namespaces=True)
    names = [a["name"] for a in found if a["namespace"] == namespace]
    executors = [name for name in names if name.startswith("wfray-executor-")]
    return {name: hasattr(ray.get_actor(name, namespace=namespace), "adopt") for name in executors}


def old(data_dir: str, namespace: str, folder: str) -> dict[str, Any]:
    import wfray
    from tests.fixtures.upgrade_flows import Gated, gated

    here = Path(folder)
    journal, opened = here / "journal", here / "open"
    opened.touch()
    client = connect(data_dir, namespace)

    def held(gate: str) -> Gated:
        return Gated(journal=str(journal), crunch_gate=gate, deliver_gate=str(here / "deliver"))

    in_io = [client.submit(gated, held(str(opened))).run_id for _ in range(2)]
    wait_for("two io steps", lambda: started(journal, set(in_io), "deliver") == 2)
    in_cpu = [client.submit(gated, held(str(here / "crunch"))).run_id for _ in range(4)]
    wait_for("two cpu steps", lambda: started(journal, set(in_cpu), "crunch") >= 2)
    return {
        "runs": in_io + in_cpu,
        "not_started": 4 - started(journal, set(in_cpu), "crunch"),
        "wfray": str(Path(wfray.__file__).parent),
        "executors_adopt": executor_methods(namespace),
    }


def new(data_dir: str, namespace: str, run_ids: list[str]) -> dict[str, Any]:
    import wfray

    client = connect(data_dir, namespace)
    results = {run_id: client.run(run_id).result(timeout=WAIT_S) for run_id in run_ids}
    attempts = {
        run_id: sorted([a.step, a.attempt, a.status.value] for a in client.detail(run_id).attempts)
        for run_id in run_ids
    }
    upgrades = [[e.via, e.outcome] for e in client.audit(action="upgrade")]
    return {
        "results": results,
        "attempts": attempts,
        "audited": upgrades,
        "wfray": str(Path(wfray.__file__).parent),
        "executors_adopt": executor_methods(namespace),
    }


if __name__ == "__main__":
    mode, data_dir, namespace, rest = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    if mode == "old":
        answer = old(data_dir, namespace, rest)
    else:
        answer = new(data_dir, namespace, json.loads(rest))
    print(json.dumps(answer))
