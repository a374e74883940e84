"""`wfray submit` honours uniqueness keys: a real `wfray start --local` and real subprocesses."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e.test_cli_live import Cli

MODULE = "tests.fixtures.unique_flows"


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(tmp_path / "data")
    try:
        started = runner(
            "start", "--local", "--module", MODULE, "--num-cpus", "2", "--object-store-mb", "200"
        )
        assert started.returncode == 0, started.stderr
        owner = psutil.Process(int(str(runner.instance()["pid"])))
        runner.family = [owner, *owner.children(recursive=True)]
        yield runner
    finally:
        if (runner.data_dir / "instance.json").exists():
            runner("stop")
        for process in runner.family:
            if process.is_running():
                process.kill()


def test_submit_honours_the_policy_shows_the_key_and_refuses_a_bad_key(cli: Cli) -> None:
    week = f"W-{uuid.uuid4().hex[:6]}"
    given = json.dumps({"week": week})

    first = cli.json("submit", "unit_unique_once", "--input", given, "--wait")
    again = cli.json(
        "submit", "unit_unique_once", "--input", json.dumps({"week": week, "note": "x"})
    )
    assert first["status"] == "completed" and again["run_id"] == first["run_id"]
    shown = cli("show", first["run_id"])
    assert f"unique key weekly:{week}" in shown.stdout, shown.stdout
    detail = cli.json("show", first["run_id"])
    assert detail["run"]["unique_key"] == f"weekly:{week}"

    cli.json("submit", "unit_unique_refuse", "--input", given)
    refused = cli("submit", "unit_unique_refuse", "--input", given)
    assert refused.returncode == 1, refused.stderr
    assert f"holds uniqueness key 'weekly:{week}'" in refused.stderr

    bad = cli("submit", "unit_unique_bad_key", "--input", '{"week": "boom"}')
    assert bad.returncode == 2, bad.stderr
    assert "'unit_unique_bad_key'" in bad.stderr and "must be a string" in bad.stderr
    listed = cli.json("runs", "--workflow", "unit_unique_bad_key")
    assert listed == [] or listed.get("runs") == []
