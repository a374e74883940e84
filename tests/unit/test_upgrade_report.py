"""What `wfray upgrade` tells the operator: nothing to do, the store alone, or the actors
replaced with what each held (adapters/ray/upgrade.py; the upgrade itself is tested on Ray:
tests/integration/test_upgrade_on_ray.py and tests/cluster/test_upgrade_from_previous_commit.py)."""

from __future__ import annotations

from wfray.adapters.ray.upgrade import FoundActor, UpgradeReport
from wfray.domain.versions import CURRENT, Versions

OLD = Versions("0.0.9", "0011")


def test_nothing_to_do_is_said_in_one_line() -> None:
    report = UpgradeReport("ns", [FoundActor("wfray-coordinator", CURRENT)], ("0013",), ("0013",))
    assert report.nothing_to_do
    assert report.lines() == [
        f"nothing to do: wfray's actors in Ray namespace 'ns' already run {CURRENT}, and the "
        "store is at schema 0013"
    ]


def test_a_store_migrated_without_actors_says_none_were_restarted() -> None:
    report = UpgradeReport("ns", [], ("0011",), ("0013",))
    assert not report.nothing_to_do
    assert report.lines() == [
        "store: migrated from schema 0011 to 0013",
        "no wfray actors in Ray namespace 'ns': none restarted (`wfray start` starts them on "
        "this wfray)",
    ]


def test_replaced_actors_are_listed_with_what_they_held() -> None:
    found = [FoundActor("wfray-coordinator", OLD), FoundActor("wfray-executor-cpu", None)]
    report = UpgradeReport("ns", found, ("0011",), ("0013",), {"wfray-executor-cpu": 2})
    report.handed_over = {"wfray-executor-cpu": 3}
    report.restarted = True
    assert report.lines() == [
        "store: migrated from schema 0011 to 0013",
        "replaced: wfray-coordinator (wfray 0.0.9 at schema 0011); wfray-executor-cpu (no "
        "version reported)",
        "drained wfray-executor-cpu: waited for 2 running attempts, handed 3 outcomes to its "
        "successor",
        f"started the coordinator and executors on {CURRENT}",
    ]
