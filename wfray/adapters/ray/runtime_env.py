"""Runtime environments on Ray: what the submitting job's own holds, and an explicit one
uploaded as Ray would upload it, so that a run records package URIs, never local paths.

Ray turns a local `working_dir` or `py_modules` entry into a content-addressed package in
its GCS (`gcs://_ray_pkg_<hash>.zip`) when a job starts (`ray.init` calls
`upload_working_dir_if_needed` / `upload_py_modules_if_needed`); a task's or actor's
`runtime_env` must name such URIs. wfray calls the same functions for an explicit env, so
its packages are the ones Ray would have made, and records only the URIs.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import ray
from ray.runtime_env import RuntimeEnv

from wfray.domain.code_env import CodeEnv, job_env, recorded_env, refuse

log = logging.getLogger("wfray.client")


def current_job_env() -> CodeEnv | None:
    """The runtime env of this Ray job (its packages already uploaded by Ray), as recorded;
    None outside Ray or when the job has none worth recording."""
    if not ray.is_initialized():
        return None
    raw: Mapping[str, Any] = ray.get_runtime_context().runtime_env or {}
    return job_env(dict(raw))


def uploaded_env(runtime_env: Mapping[str, Any]) -> CodeEnv:
    """An explicit runtime env, checked (known keys, sizes, names), its local directories
    and modules uploaded to the cluster, and recorded (URIs, requirements, variable names)."""
    recorded_env(runtime_env, require_uris=False)  # refuse bad input before any upload
    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed
    from ray._private.runtime_env.working_dir import upload_working_dir_if_needed

    env = dict(runtime_env)
    include_gitignore = os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"
    with tempfile.TemporaryDirectory(prefix="wfray-env-") as scratch:
        for field, upload in (
            ("py_modules", upload_py_modules_if_needed),
            ("working_dir", upload_working_dir_if_needed),
        ):
            try:
                env = upload(env, include_gitignore=include_gitignore, scratch_dir=scratch)
            except (OSError, ValueError, TypeError, ray.exceptions.RayError) as exc:
                raise refuse(field, f"could not be uploaded: {exc}"[:500]) from exc
    env.pop("excludes", None)
    recorded = recorded_env(env, require_uris=True)
    try:  # Ray's own checks of the fields (pip options, uv, ...), before any run records it
        RuntimeEnv(**recorded.ray_options())
    except (ValueError, TypeError) as exc:
        raise refuse("runtime_env", str(exc)[:500]) from exc
    return recorded
