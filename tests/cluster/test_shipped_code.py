"""Code travels with the run, on a real `ray start --head` whose processes do NOT have the
repository on their PYTHONPATH (only the `wfray` package, as an installed wfray): a user's
workflow reaches the workers through its job's working_dir, or not at all.

Each "deploy" is a temporary working dir holding `shipped_flow.py` (tests/cluster/shipped/
flow.py with its CODE set): the same workflow name and steps (one cpu, one io) in every
deploy, different code. Jobs go through the Job Submission SDK, as `ray job submit` sends
them; an operator's driver (scripts/shipped_control.py) starts wfray first, as `wfray start`
would, waits for runs, resumes them, and plays Ray's package GC.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import Head, head_with, run_script, shipped_wfray_only
from tests.cluster.test_job_submit import submit, wait_for_end

pytestmark = pytest.mark.timeout(900)

FLOW = Path(__file__).with_name("shipped") / "flow.py"
CONTROL = Path(__file__).with_name("scripts") / "shipped_control.py"
SUBMITTED = re.compile(r"submitted run (\S+) of shipped")


@dataclass(frozen=True)
class Cluster:
    head: Head
    root: Path  # deploys, gates, the wfray data dir
    env: dict[str, str]  # the WFRAY_* variables of every job and of the operator's driver
    site: dict[str, str]  # the PYTHONPATH of the head (wfray only), for the operator too

    def deploy(self, code: str) -> Path:
        folder = self.root / f"deploy-{code}-{uuid.uuid4().hex[:6]}"
        folder.mkdir()
        text = FLOW.read_text().replace('CODE = "template"', f"CODE = {code!r}")
        assert f"CODE = {code!r}" in text
        (folder / "shipped_flow.py").write_text(text)
        return folder

    def job(
        self, deploy: Path, ask: dict[str, Any], *, wait: bool, pip: list[str] | None = None
    ) -> str:
        from ray.job_submission import JobSubmissionClient

        command = [sys.executable, "-m", "wfray.job", "shipped_flow:flow"]
        command += ["--input", json.dumps(ask), "--poll", "0.5", *(["--wait"] if wait else [])]
        runtime_env: dict[str, Any] = {"working_dir": str(deploy), "env_vars": self.env}
        if pip:
            runtime_env["pip"] = pip
        return submit(
            JobSubmissionClient(self.head.dashboard_url),
            entrypoint=shlex.join(command),
            runtime_env=runtime_env,
            submission_id=f"shipped-{deploy.name}-{uuid.uuid4().hex[:6]}",
            entrypoint_num_cpus=0,
        )

    def ended(self, submission_id: str) -> str:
        """The job's log, once it succeeded."""
        from ray.job_submission import JobStatus, JobSubmissionClient

        jobs = JobSubmissionClient(self.head.dashboard_url)
        status = wait_for_end(jobs, submission_id)
        log: str = jobs.get_job_logs(submission_id)
        assert status == JobStatus.SUCCEEDED, log[-3000:]
        return log

    def run_of(self, submission_id: str) -> str:
        found = SUBMITTED.search(self.ended(submission_id))
        assert found, submission_id
        return found[1]

    def control(self, *actions: list[Any]) -> list[Any]:
        answers: list[Any] = run_script(
            uuid.uuid4().hex,  # its own mark: what it leaves is killed, never the head
            CONTROL,
            self.head.gcs_address,
            json.dumps(actions),
            timeout_s=300,
            env={**self.site, **self.env},
        )
        return answers


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("shipped")
    bare = shipped_wfray_only(root / "site")
    with head_with(bare) as head:
        env = {"WFRAY_DATA_DIR": str(root / "wfray"), "WFRAY_NAMESPACE": "wfray-shipped"}
        yield Cluster(head, root, env, bare)


def result_of(log: str) -> Any:
    """A --wait job prints its run's result as JSON on a line of its own."""
    return json.loads([line for line in log.splitlines() if line.startswith('"')][-1])


def test_each_deploy_runs_its_own_code_and_a_run_keeps_the_code_it_started_with(
    cluster: Cluster,
) -> None:
    cluster.control(["connect"])  # wfray started by the operator, not by a user's job
    a, b = cluster.deploy("A"), cluster.deploy("B")
    gate = cluster.root / "gate-1"
    in_flight = cluster.run_of(cluster.job(a, {"gate": str(gate)}, wait=False))
    # deploy B while A's run waits in its io step; A's code runs again beside it
    job_a, job_b = cluster.job(a, {}, wait=True), cluster.job(b, {}, wait=True)
    assert result_of(cluster.ended(job_a)) == "cpu:A+io:A"
    assert result_of(cluster.ended(job_b)) == "cpu:B+io:B"
    (early,) = cluster.control(["touch", str(gate)], ["wait", in_flight])[1:]
    assert early["status"] == "completed", early
    assert early["result"] == "cpu:A+io:A", early
    assert early["runtime_env"]["working_dir"].startswith("gcs://_ray_pkg_")


def test_a_run_resumes_after_its_jobs_package_is_gone_and_the_coordinator_restarted(
    cluster: Cluster,
) -> None:
    cluster.control(["connect"])
    a = cluster.deploy("A")
    ready = cluster.root / "ready"
    failing = cluster.run_of(cluster.job(a, {"fail_unless": str(ready)}, wait=False))
    failed, dropped, _ = cluster.control(
        ["wait", failing], ["drop_packages_of", failing], ["restart_coordinator"]
    )
    assert failed["status"] == "failed", failed
    assert dropped and all(dropped.values()), dropped  # Ray has none of A's packages now
    (package,) = dropped
    ready.touch()
    applied, resumed, kept, published, scheduled = cluster.control(
        ["resume", failing],
        ["wait", failing],
        ["package_exists", package],
        ["publish", str(a), f"after-{failing}"],
        ["trigger", "shipped-A"],
    )
    assert applied == [True]
    assert resumed["status"] == "completed", resumed
    assert resumed["result"] == "cpu:A+io:A", resumed
    assert kept is True, "wfray uploaded A's package again from its copy"
    # A's job subscribed last and declared its schedule: an event and a tick run A's code,
    # although the publisher (no env of its own) declared both again
    assert published["result"] == "cpu:A+io:A", published
    assert scheduled["result"] == "cpu:A+io:A", scheduled
    assert published["env_hash"] == scheduled["env_hash"] == failed["env_hash"]


def test_a_jobs_pip_dependency_reaches_its_own_runs_only(cluster: Cluster) -> None:
    cluster.control(["connect"])
    with_pip = cluster.job(
        cluster.deploy("C"), {"pip_probe": True}, wait=True, pip=["inflection==0.5.1"]
    )
    assert result_of(cluster.ended(with_pip)) == "cpu:C+io:C+PipProbe"
    without = cluster.run_of(cluster.job(cluster.deploy("A"), {"pip_probe": True}, wait=False))
    (seen,) = cluster.control(["wait", without])
    assert seen["status"] == "failed", seen
    (step, status, kind, message) = seen["attempts"][-1]
    assert "ModuleNotFoundError" in kind, seen
    assert (step, status) == ("answer", "failed"), seen
    assert "inflection" in message, seen
