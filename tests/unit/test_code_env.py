"""What a run records of its runtime env, without Ray: package URIs and requirements kept,
variable names kept and their values never, bad input refused naming the field; and the
coordinator storing each env once and refusing runs that name an unknown one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fixtures import unit_flows
from wfray.application.client_commands import Submit
from wfray.application.messages import SubmitRequest
from wfray.domain.code_env import (
    MAX_ENTRIES,
    CodeEnv,
    job_env,
    recorded_env,
    shown_version,
)
from wfray.domain.errors import DefinitionError, InputValidationError
from wfray.sdk.schedules import build_spec
from wfray.testing import local_wfray

WORKING_DIR = "gcs://_ray_pkg_3f1c0a9e2b7d4c6e8f0a1b2c3d4e5f60.zip"
MODULE = "gcs://_ray_pkg_0123456789abcdef0123456789abcdef.zip"

# A job's runtime env as `ray.get_runtime_context().runtime_env` gives it after Ray uploaded
# the job's packages (ray/_private/worker.py: upload_*_if_needed, then excludes dropped).
JOB_ENV: dict[str, Any] = {
    "working_dir": WORKING_DIR,
    "py_modules": [MODULE],
    "pip": ["requests==2.32.3", "pyyaml"],
    "env_vars": {"API_TOKEN": "s3cr3t-value", "REGION": "eu-west-1"},
    "config": {"setup_timeout_seconds": 600, "eager_install": True},
    "_ray_commit": "b7f4259",
    "conda": "base",
}


def test_a_jobs_env_records_package_uris_requirements_and_variable_names_only() -> None:
    env = job_env(JOB_ENV)
    assert env is not None
    assert env.as_dict() == {
        "working_dir": WORKING_DIR,
        "py_modules": [MODULE],
        "pip": ["requests==2.32.3", "pyyaml"],
        "env_var_names": ["API_TOKEN", "REGION"],
        "setup_timeout_s": 600,
    }
    assert "s3cr3t" not in env.to_json() and "eu-west-1" not in env.to_json()
    # what Ray builds for the run's attempts: the packages and requirements, no variables
    assert env.ray_options() == {
        "working_dir": WORKING_DIR,
        "py_modules": [MODULE],
        "pip": ["requests==2.32.3", "pyyaml"],
        "config": {"setup_timeout_seconds": 600},
    }


def test_the_hash_is_the_code_identity() -> None:
    env = job_env(JOB_ENV)
    assert env is not None
    same = job_env({**JOB_ENV, "env_vars": {"REGION": "other", "API_TOKEN": "other"}})
    assert same is not None and same.hash == env.hash  # values are not part of it
    other_code = job_env({**JOB_ENV, "working_dir": WORKING_DIR.replace("3f1c", "4f1c")})
    assert other_code is not None and other_code.hash != env.hash
    assert len(env.hash) == 64
    assert shown_version("v1", env.hash) == f"v1+{env.hash[:12]}"
    assert shown_version("v1", None) == "v1"


def test_a_job_without_a_runtime_env_records_none() -> None:
    assert job_env({}) is None
    assert job_env(None) is None
    assert job_env({"_ray_commit": "x", "config": {"setup_timeout_seconds": -1}}) is None


def test_an_env_of_variable_names_only_builds_nothing() -> None:
    env = job_env({"env_vars": {"A": "1"}})
    assert env is not None and not env.builds_anything and env.ray_options() == {}


def test_stored_text_reads_back_and_is_checked_again() -> None:
    env = recorded_env({"uv": {"packages": ["httpx"], "uv_check": False}, "py_modules": [MODULE]})
    assert CodeEnv.from_json(env.to_json()) == env
    with pytest.raises(InputValidationError, match="working_dir"):
        CodeEnv.from_json(json.dumps({"working_dir": "/home/someone/code"}))


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"conda": "base"}, "conda"),
        ({"container": {"image": "x"}}, "container"),
        ({"working_dir": "/tmp/local"}, "working_dir"),
        ({"working_dir": 42}, "working_dir"),
        ({"working_dir": "gcs://a\x00b.zip"}, "working_dir"),
        ({"py_modules": "gcs://one.zip"}, "py_modules"),
        ({"py_modules": [MODULE] * (MAX_ENTRIES + 1)}, "py_modules"),
        ({"pip": ["x" * 2000]}, "pip"),
        ({"pip": "requirements.txt"}, "pip"),
        ({"pip": {"packages": ["a"], "opt": {"nested": 1}}}, "pip.opt"),
        ({"env_vars": {"NOT A NAME": "x"}}, "env_vars"),
        ({"env_vars": {"<script>": "x"}}, "env_vars"),
        ({"env_vars": ["A"]}, "env_vars"),
        ({"env_vars": {f"V{i}": "" for i in range(MAX_ENTRIES + 1)}}, "env_vars"),
        ({"config": {"setup_timeout_seconds": True}}, "setup_timeout_seconds"),
        ({"config": {"setup_timeout_seconds": 10**9}}, "setup_timeout_seconds"),
        ({"config": {"eager_install": False}}, "config"),
    ],
)
def test_bad_input_is_refused_naming_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(InputValidationError, match=field):
        recorded_env(raw)


def test_the_recorded_env_is_bounded() -> None:
    many = [f"package-{i}=={'9' * 900}" for i in range(MAX_ENTRIES)]
    with pytest.raises(InputValidationError, match="characters"):
        recorded_env({"pip": many})


def test_a_schedule_starts_its_runs_in_the_env_it_records() -> None:
    with local_wfray() as wf:
        env_hash = wf.env_hash({"py_modules": [MODULE]})
        wf.register(unit_flows.single)
        spec = build_spec(unit_flows.single, name="env-probe", cron="0 0 1 1 *")
        wf.create_schedule(spec.with_(env_hash=env_hash))
        run = wf.trigger_schedule("env-probe")
        assert run.result(timeout=30) == unit_flows.only()
        assert wf.detail(run.run_id).run.env_hash == env_hash
        with pytest.raises(DefinitionError, match="env_hash"):
            spec.with_(env_hash="not-a-hash")


def test_runs_record_their_env_once_and_unknown_envs_are_refused() -> None:
    given = {"working_dir": WORKING_DIR, "env_vars": {"API_TOKEN": "s3cr3t-value"}}
    with local_wfray() as wf:
        first = wf.submit(unit_flows.single, runtime_env=given)
        second = wf.submit(unit_flows.single, runtime_env=given)
        plain = wf.submit(unit_flows.single)
        for run in (first, second, plain):
            assert run.result(timeout=30) == unit_flows.only()
        detail = wf.detail(first.run_id)
        assert detail.run.env_hash is not None
        assert wf.detail(second.run_id).run.env_hash == detail.run.env_hash
        assert detail.runtime_env == {"working_dir": WORKING_DIR, "env_var_names": ["API_TOKEN"]}
        assert detail.run.shown_version == f"{detail.run.version}+{detail.run.env_hash[:12]}"
        assert wf.detail(plain.run_id).run.env_hash is None
        stored = wf.engine.store.get_runtime_envs([detail.run.env_hash])
        assert "s3cr3t" not in json.dumps(stored)
        schema = unit_flows.single.schema
        unknown = SubmitRequest("r-unknown", schema.name, schema.version, "null", env_hash="a" * 64)
        (refused,) = wf.call(Submit([unknown]))
        assert refused.error is not None and "unknown runtime env" in refused.error
        malformed = SubmitRequest("r-bad", schema.name, schema.version, "null", env_hash="../x")
        (refused,) = wf.call(Submit([malformed]))
        assert refused.error is not None and "env_hash" in refused.error
