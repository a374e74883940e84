"""Which wfray a process runs, and the rule that two must run the same one to work together."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import wfray
from wfray.domain.errors import VersionMismatchError
from wfray.domain.versions import (
    CURRENT,
    SCHEMA_REVISION,
    WFRAY_VERSION,
    Versions,
    check_same,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
WHO = "the coordinator in Ray namespace 'shop'"


def test_the_schema_revision_is_the_migrations_head() -> None:
    from wfray.adapters.sqlalchemy.migrate import head_revisions

    assert head_revisions() == (SCHEMA_REVISION,), (
        "a new migration moves SCHEMA_REVISION in wfray/domain/versions.py"
    )


def test_the_package_version_is_read_from_the_code() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "wfray.domain.versions.WFRAY_VERSION"}
    assert wfray.__version__ == WFRAY_VERSION == CURRENT.wfray


def test_the_same_versions_pass() -> None:
    check_same(CURRENT, Versions(WFRAY_VERSION, SCHEMA_REVISION), WHO, "this client")


@pytest.mark.parametrize(
    "theirs",
    [Versions("0.0.9", SCHEMA_REVISION), Versions(WFRAY_VERSION, "0010"), Versions("9.0", "0099")],
    ids=["older wfray", "other schema", "newer both"],
)
def test_another_version_is_refused_naming_both_and_what_to_do(theirs: Versions) -> None:
    mine = Versions("0.2.0", "0012")
    with pytest.raises(VersionMismatchError) as caught:
        check_same(mine, theirs, WHO, "this client")
    message = str(caught.value)
    assert f"{WHO} runs wfray {theirs.wfray} at schema {theirs.schema}" in message
    assert "this client runs wfray 0.2.0 at schema 0012" in message
    assert "`wfray upgrade`" in message and f"use wfray {theirs.wfray} here" in message
    assert caught.value.code == "version_mismatch"


def test_an_actor_that_does_not_report_is_refused() -> None:
    with pytest.raises(VersionMismatchError, match="does not report its version"):
        check_same(CURRENT, None, WHO, "this client")


@pytest.mark.parametrize(
    "answer",
    [
        None,
        "0.1.0",
        ["0.1.0", "0011"],
        {},
        {"wfray": "0.1.0"},
        {"wfray": 1, "schema": "0011"},
        {"wfray": "0.1.0", "schema": None},
    ],
)
def test_an_answer_that_is_not_versions_reads_as_none(answer: object) -> None:
    assert Versions.from_answer(answer) is None


def test_versions_travel_as_plain_data() -> None:
    answer = CURRENT.as_dict()
    assert answer == {"wfray": WFRAY_VERSION, "schema": SCHEMA_REVISION}
    assert Versions.from_answer({**answer, "extra": "ignored"}) == CURRENT
    assert str(CURRENT) == f"wfray {WFRAY_VERSION} at schema {SCHEMA_REVISION}"


def test_a_coordinator_whose_executors_run_another_wfray_refuses_at_once_for_good() -> None:
    import asyncio

    from wfray.adapters.ray.host import START_WAIT_S, CoordinatorHost
    from wfray.bootstrap import System
    from wfray.config import load_settings

    builds = []

    async def old_executors(settings: object) -> System:
        builds.append(1)
        raise VersionMismatchError("the executor wfray-executor-cpu runs wfray 0.0.9")

    async def scenario() -> None:
        host = CoordinatorHost(load_settings(namespace="unit"), build=old_executors)
        assert host.versions() == CURRENT.as_dict()  # answered whatever the start does
        for _ in range(2):
            with pytest.raises(VersionMismatchError, match="wfray-executor-cpu") as caught:
                await host.start(wait_s=START_WAIT_S * 3)
            # the build's own error, not the one a start budget run out gives
            assert "could not start within" not in str(caught.value)
        assert builds == [1]  # not retried: no start can cure it
        await host.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))
