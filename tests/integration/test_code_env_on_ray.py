"""Code travels with the run: two runs of one workflow, each with its own runtime env, each
run their own code (cpu and io steps); a run whose env Ray cannot build fails with Ray's
error recorded while a run beside it completes. The probe module lives in tmp_path, never
in the repository (which is on every worker's PYTHONPATH and would hide the difference)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import code_env_flows as probes
from wfray.domain.errors import InputValidationError, RunFailedError
from wfray.domain.status import AttemptStatus, RunStatus
from wfray.sdk.schedules import build_spec

pytestmark = pytest.mark.timeout(300)

MISSING_PACKAGE = "gcs://_ray_pkg_" + "0" * 32 + ".zip"


def probe_dir(root: Path, value: str) -> Path:
    folder = root / f"env_{value}"
    folder.mkdir()
    (folder / "wf_code_probe.py").write_text(f"VALUE = {value!r}\n")
    return folder


def test_each_run_runs_the_code_of_its_own_env(client: Any, tmp_path: Path) -> None:
    a = probe_dir(tmp_path, "A")
    b = probe_dir(tmp_path, "B")
    env_a = {"working_dir": str(a), "env_vars": {"PROBE_SECRET": "never-stored"}}
    env_b = {"py_modules": [str(b / "wf_code_probe.py")]}
    runs = {
        "cpu:A": client.submit(probes.cpu_probe, {}, runtime_env=env_a),
        "cpu:B": client.submit(probes.cpu_probe, {}, runtime_env=env_b),
        "io:A": client.submit(probes.io_probe, {}, runtime_env=env_a),
        "io:B": client.submit(probes.io_probe, {}, runtime_env=env_b),
    }
    for expected, run in runs.items():
        assert run.result(timeout=180) == expected
    detail_a, detail_b = runs["cpu:A"].detail(), runs["cpu:B"].detail()
    assert detail_a.run.env_hash != detail_b.run.env_hash
    assert detail_a.run.shown_version.endswith("+" + detail_a.run.env_hash[:12])
    recorded = detail_a.runtime_env
    assert recorded["working_dir"].startswith("gcs://_ray_pkg_")
    assert recorded["env_var_names"] == ["PROBE_SECRET"]
    assert "never-stored" not in repr(recorded)
    assert detail_b.runtime_env["py_modules"][0].startswith("gcs://_ray_pkg_")
    # the io attempts of one env share one runner, started for it
    assert runs["io:A"].detail().attempts[0].pid != runs["io:B"].detail().attempts[0].pid


def test_children_run_in_their_parents_env(client: Any, tmp_path: Path) -> None:
    env = {"working_dir": str(probe_dir(tmp_path, "C"))}
    parent = client.submit(probes.parent_probe, {}, runtime_env=env)
    assert parent.result(timeout=180) == ["cpu:C", "io:C"]
    children = parent.detail().children
    assert {c.env_hash for c in children} == {parent.detail().run.env_hash}


def test_a_schedule_runs_the_code_of_the_env_it_was_created_with(
    client: Any, tmp_path: Path
) -> None:
    env_hash = client.env_hash({"working_dir": str(probe_dir(tmp_path, "S"))})
    client.register(probes.io_probe)
    spec = build_spec(probes.io_probe, name="code-env-probe", input={}, cron="0 0 1 1 *")
    client.create_schedule(spec.with_(env_hash=env_hash))
    try:
        run = client.trigger_schedule(spec.name)
        assert run.result(timeout=180) == "io:S"
        assert run.detail().run.env_hash == env_hash
    finally:
        client.delete_schedule(spec.name)


def test_runs_an_event_starts_run_the_code_of_the_latest_deploy_that_subscribed(
    client: Any, tmp_path: Path
) -> None:
    def published(event_id: str) -> tuple[Any, str | None]:
        (run_id,) = client.publish("code-env-probe", None, id=event_id)
        (view,) = client.wait([run_id], timeout=180)
        assert view.status is RunStatus.COMPLETED, client.detail(run_id).attempts
        return json.loads(view.result_json), client.detail(run_id).run.env_hash

    first = {"working_dir": str(probe_dir(tmp_path, "E"))}
    client.register(probes.event_probe, runtime_env=first)
    # publishing registers the subscribers it declares, with its own env (none here): the
    # env a deploy recorded stays
    assert published("first") == ("event:E", client.env_hash(first))
    second = {"working_dir": str(probe_dir(tmp_path, "F"))}
    client.register(probes.event_probe, runtime_env=second)  # a new deploy
    assert published("second") == ("event:F", client.env_hash(second))


def test_runs_without_an_env_behave_as_before(client: Any) -> None:
    run = client.submit(probes.cpu_probe, {})
    with pytest.raises(RunFailedError, match="wf_code_probe"):
        run.result(timeout=120)
    assert run.detail().run.env_hash is None


@pytest.mark.parametrize("probe", [probes.cpu_probe, probes.io_probe], ids=["cpu", "io"])
def test_an_env_whose_package_is_nowhere_fails_only_its_run(
    client: Any, tmp_path: Path, probe: Any
) -> None:
    # a package nobody uploaded: Ray has none, and wfray has no copy to put back
    broken = client.submit(probe, {}, runtime_env={"working_dir": MISSING_PACKAGE})
    fine = client.submit(probe, {}, runtime_env={"working_dir": str(probe_dir(tmp_path, "D"))})
    assert fine.result(timeout=180).endswith(":D")
    with pytest.raises(RunFailedError):
        broken.result(timeout=180)
    detail = broken.detail()
    assert detail.run.status is RunStatus.FAILED
    (attempt,) = detail.attempts
    assert attempt.status is AttemptStatus.FAILED
    assert attempt.error_type == "wfray.PackageUnavailable"
    assert f"Ray no longer has package {MISSING_PACKAGE}" in (attempt.error_message or "")
    assert client.execute(probe, {}, runtime_env={"working_dir": str(tmp_path / "env_D")}) == (
        fine.result(timeout=1)
    )


def recorded_packages(client: Any, runtime_env: dict[str, Any]) -> tuple[str, ...]:
    """Record an env as a job would before its first run; the packages it names."""
    client.env_hash(runtime_env)
    packages: tuple[str, ...] = client.prepare_env(runtime_env).packages
    return packages


def drop_from_ray(uri: str) -> None:
    """What Ray's GC does to a package no job, detached actor or pin refers to any more."""
    from ray._private.runtime_env.packaging import package_exists
    from ray.experimental.internal_kv import _internal_kv_del

    _internal_kv_del(uri)
    assert not package_exists(uri)


@pytest.mark.parametrize("probe", [probes.cpu_probe, probes.io_probe], ids=["cpu", "io"])
def test_a_package_ray_dropped_is_uploaded_again_from_wfrays_copy(
    client: Any, tmp_path: Path, probe: Any
) -> None:
    from ray._private.runtime_env.packaging import package_exists

    value = f"K{probe.__name__}"
    env = {"py_modules": [str(probe_dir(tmp_path, value) / "wf_code_probe.py")]}
    (package,) = recorded_packages(client, env)  # its job may end now: nothing ran in it
    drop_from_ray(package)
    # as a schedule or a resume would: by the recorded URI (a local path is uploaded again)
    run = client.submit(probe, {}, runtime_env={"py_modules": [package]})
    assert run.result(timeout=180) == f"{probe.__name__.split('_')[0]}:{value}"
    assert package_exists(package)


@pytest.mark.parametrize("damage", ["missing", "damaged"])
def test_a_lost_package_whose_copy_is_gone_fails_only_its_run(
    client: Any, tmp_path: Path, damage: str
) -> None:
    from wfray.adapters.blob import blob_store
    from wfray.adapters.package_copies import PackageCopies

    env = {"py_modules": [str(probe_dir(tmp_path, f"L{damage}") / "wf_code_probe.py")]}
    (package,) = recorded_packages(client, env)
    copies = PackageCopies(blob_store(client.settings.blob_root))
    assert copies.has(package)
    if damage == "missing":
        copies.delete(package)
    else:
        copies.blobs.put(copies.key(package), b"PK\x03\x04 not the bytes that were kept")
    drop_from_ray(package)
    lost = client.submit(probes.cpu_probe, {}, runtime_env={"py_modules": [package]})
    beside = client.submit(
        probes.cpu_probe, {}, runtime_env={"working_dir": str(probe_dir(tmp_path, "M" + damage))}
    )
    assert beside.result(timeout=180) == f"cpu:M{damage}"
    with pytest.raises(RunFailedError):
        lost.result(timeout=180)
    (attempt,) = lost.detail().attempts
    assert attempt.error_type == "wfray.PackageUnavailable"
    message = attempt.error_message or ""
    assert package in message and "could not be put back" in message
    assert ("no copy" if damage == "missing" else "damaged") in message


def test_bad_explicit_envs_are_refused_before_anything_runs(client: Any, tmp_path: Path) -> None:
    for bad, field in [
        ({"conda": "base"}, "conda"),
        ({"working_dir": str(tmp_path / "missing")}, "working_dir"),
        ({"env_vars": {"BAD NAME": "x"}}, "env_vars"),
        ({"pip": ["x" * 5000]}, "pip"),
        ({"py_modules": ["a\x00b"]}, "py_modules"),
        ({"pip": {"packages": ["pyyaml"], "unknown_option": True}}, "pip"),
    ]:
        with pytest.raises(InputValidationError, match=field):
            client.submit(probes.cpu_probe, {}, runtime_env=bad)
