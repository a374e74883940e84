"""Batch runs through Ray's Job Submission API against a `ray start --head` of our own.

The job is what the README tells users to run: `python -m wfray.job MODULE:WORKFLOW ...
--wait` with the repository as working dir. It starts the coordinator on that cluster,
follows the run in the job's log and sets the job's status from the run's.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.cluster.conftest import ROOT, Head

JOB_TIMEOUT_S = 150.0


def entrypoint(tally: dict[str, Any], key: str) -> str:
    return shlex.join(
        [
            sys.executable,  # the cluster's Python: `python` in the README
            "-m",
            "wfray.job",
            "tests.fixtures.cluster_flows:tally",
            "--wait",
            "--input",
            json.dumps(tally),
            "--idempotency-key",
            key,
            "--poll",
            "0.2",
        ]
    )


def submit(jobs: Any, **job: Any) -> str:
    """Submit, riding out the head's start-up (its job agent registers a few seconds late)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            submission_id: str = jobs.submit_job(**job)
            return submission_id
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def wait_for_end(jobs: Any, submission_id: str) -> Any:
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + JOB_TIMEOUT_S
    while (status := jobs.get_job_status(submission_id)) not in {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.STOPPED,
    }:
        if time.monotonic() > deadline:
            jobs.stop_job(submission_id)
            raise AssertionError(
                f"job {submission_id} still {status} after {JOB_TIMEOUT_S:.0f}s:\n"
                f"{jobs.get_job_logs(submission_id)[-3000:]}"
            )
        time.sleep(0.5)
    return status


def test_a_batch_job_runs_a_workflow_and_its_status_follows_the_run(
    ray_head: Head, tmp_path: Path
) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    jobs = JobSubmissionClient(ray_head.dashboard_url)
    runtime_env = {
        "working_dir": str(ROOT),
        "excludes": [".venv", ".git", "*.egg-info", "notebooks", "bench", ".wfray"],
        # one store for every job: the coordinator outlives the job that started it
        "env_vars": {"WFRAY_DATA_DIR": str(tmp_path / "wfray"), "WFRAY_NAMESPACE": "wfray-jobs"},
    }
    ok = submit(
        jobs,
        entrypoint=entrypoint({"count": 6, "nap_s": 0.4}, "tally-ok"),
        runtime_env=runtime_env,
        submission_id=f"wfray-ok-{uuid.uuid4().hex[:8]}",
        entrypoint_num_cpus=0,
    )
    assert wait_for_end(jobs, ok) == JobStatus.SUCCEEDED, jobs.get_job_logs(ok)[-3000:]
    log = jobs.get_job_logs(ok)
    progress = [line for line in log.splitlines() if line.startswith("progress: ")]
    # tasks finish one after another while the job watches: the count grows line by line
    done = [int(line.split()[1].split("/")[0]) for line in progress]
    assert len(progress) >= 3 and done == sorted(done) and done[0] < done[-1], log
    assert re.search(r"^run \S+ of cluster-tally: completed$", log, re.MULTILINE), log
    assert "\n150\n" in f"\n{log}", log  # the result as JSON: (0 + 1 + ... + 5) * 10

    bad = submit(
        jobs,
        entrypoint=entrypoint({"count": 3, "nap_s": 0.1, "fail": True}, "tally-bad"),
        runtime_env=runtime_env,
        submission_id=f"wfray-bad-{uuid.uuid4().hex[:8]}",
        entrypoint_num_cpus=0,
    )
    assert wait_for_end(jobs, bad) == JobStatus.FAILED, jobs.get_job_logs(bad)[-3000:]
    bad_log = jobs.get_job_logs(bad)
    assert ": failed: " in bad_log and "cannot be weighed" in bad_log, bad_log
    assert jobs.get_job_info(bad).message and "exit code 1" in jobs.get_job_info(bad).message

    # the same idempotency key is the same run: resubmitting a job does not run it again
    again = submit(
        jobs,
        entrypoint=entrypoint({"count": 6, "nap_s": 0.4}, "tally-ok"),
        runtime_env=runtime_env,
        submission_id=f"wfray-again-{uuid.uuid4().hex[:8]}",
        entrypoint_num_cpus=0,
    )
    assert wait_for_end(jobs, again) == JobStatus.SUCCEEDED
    first_run = next(line for line in log.splitlines() if line.startswith("submitted run"))
    assert first_run in jobs.get_job_logs(again)
