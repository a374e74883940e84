"""Audit entries are bounded and cleaned before anything stores them; the trail's own
retention deletes what is past its keep period; its settings refuse nonsense."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from wfray.adapters.memory.audit import InMemoryAuditLog
from wfray.config import load_settings
from wfray.coordinator.audit_retention import purge_once
from wfray.domain.audit import AuditQuery, Origin, audit_entry, bounded_params, clean_text
from wfray.domain.errors import DefinitionError
from wfray.testing.clock import FakeClock

T0 = datetime(2026, 12, 2, tzinfo=UTC)


def test_text_loses_control_characters_and_says_how_much_was_cut() -> None:
    assert clean_text("a\x00b\x1b[1mc\td\ne\x7f\x9f") == "ab[1mc\td\ne"
    cut = clean_text("x" * 5000, 100)
    assert len(cut) <= 100 and cut == "x" * 71 + "...[4929 more characters cut]"
    assert clean_text(12) == "12"


def test_parameters_are_plain_values_and_bounded() -> None:
    params = bounded_params({"n": 1, "ok": True, "none": None, "obj": {"k": [1]}, "s": "\x00x"})
    assert params == {"n": 1, "ok": True, "none": None, "obj": "{'k': [1]}", "s": "x"}
    many = bounded_params({f"k{i}": "v" * 900 for i in range(100)})
    assert len(many) <= 9 and all(len(v) == 900 for v in many.values())


def test_an_entry_without_origin_is_the_client_s() -> None:
    entry = audit_entry(T0, None, "run.resume", ["r1"])
    assert (entry.actor, entry.via, entry.address) == ("client", "client", None)
    assert audit_entry(T0, Origin("\x00"), "run.resume").actor == "unknown"


def test_the_trail_keeps_its_entries_for_their_keep_period() -> None:
    log = InMemoryAuditLog()
    log.record([audit_entry(T0 - timedelta(days=d), None, "retention") for d in (2, 40)])
    clock = FakeClock(T0)
    assert asyncio.run(purge_once(log, clock, timedelta(days=30))) == 1
    assert [e.at for e in log.read(AuditQuery())] == [T0 - timedelta(days=2)]


def test_audit_settings_are_checked() -> None:
    assert load_settings({"WFRAY_AUDIT_RETENTION_DAYS": "0"}).audit_retention_days == 0
    with pytest.raises(DefinitionError, match="WFRAY_AUDIT_RETENTION_DAYS"):
        load_settings({"WFRAY_AUDIT_RETENTION_DAYS": "-1"})
    with pytest.raises(DefinitionError, match="WFRAY_API_AUDIT_FLUSH_S"):
        load_settings({"WFRAY_API_AUDIT_FLUSH_S": "0"})
