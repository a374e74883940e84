"""The AuditLog contract, run on every adapter (memory, SQLite, PostgreSQL), and the
migration that adds its table (0013) going up and down."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from wfray.adapters.memory.audit import InMemoryAuditLog
from wfray.application.ports import AuditLog
from wfray.domain.audit import (
    MAX_NAME_CHARS,
    MAX_PARAMS_JSON,
    MAX_TARGETS,
    MAX_TEXT_CHARS,
    AuditQuery,
    Origin,
    audit_entry,
)

T0 = datetime(2026, 12, 2, 9, 30, 0, 123456, tzinfo=UTC)
OPS = Origin("ops", "http", "10.0.0.7")
CLI = Origin("alice", "cli", "bastion")


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def audit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditLog]:
    if request.param == "memory":
        yield InMemoryAuditLog()
        return
    from wfray.adapters.sqlalchemy.audit import SqlAuditLog

    url = (
        f"sqlite:///{tmp_path / 'audit.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    made = SqlAuditLog(url)
    yield made
    made.close()


def test_an_entry_reads_back_whole(audit: AuditLog) -> None:
    entry = audit_entry(
        T0,
        OPS,
        "run.cancel",
        ["r1", "r2"],
        {"reason": "stuck", "compensate": True, "n": 2.5},
        "r1: applied (cancelled); r2: refused (completed): already finished",
    )
    audit.record([entry])
    (back,) = audit.read(AuditQuery())
    assert back.id is not None
    assert (back.at, back.actor, back.via, back.address) == (T0, "ops", "http", "10.0.0.7")
    assert (back.action, back.targets, back.outcome) == ("run.cancel", ("r1", "r2"), entry.outcome)
    assert back.params == {"reason": "stuck", "compensate": True, "n": 2.5}


def test_newest_first_filtered_and_paged_by_id(audit: AuditLog) -> None:
    for i in range(7):
        who = OPS if i % 2 else CLI
        action = "run.resume" if i < 4 else "schedule.pause"
        audit.record([audit_entry(T0 + timedelta(minutes=i), who, action, [f"t{i}", "shared"])])
    everything = audit.read(AuditQuery(limit=100))
    ids = [e.id for e in everything]
    assert len(ids) == 7 and ids == sorted(ids, reverse=True)  # type: ignore[type-var]
    first = audit.read(AuditQuery(limit=3))
    second = audit.read(AuditQuery(limit=3, before_id=first[-1].id))
    assert [e.targets[0] for e in first + second] == ["t6", "t5", "t4", "t3", "t2", "t1"]
    assert {e.actor for e in audit.read(AuditQuery(actor="alice"))} == {"alice"}
    assert len(audit.read(AuditQuery(actor="alice"))) == 4
    assert len(audit.read(AuditQuery(action="schedule.pause"))) == 3
    assert [e.targets[0] for e in audit.read(AuditQuery(target="t3"))] == ["t3"]
    assert len(audit.read(AuditQuery(target="shared"))) == 7
    assert audit.read(AuditQuery(target="t")) == []  # a target is matched whole
    window = audit.read(
        AuditQuery(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4))
    )
    assert [e.targets[0] for e in window] == ["t3", "t2"]


def test_purge_deletes_only_what_is_older(audit: AuditLog) -> None:
    audit.record([audit_entry(T0 - timedelta(days=d), CLI, "retention") for d in (400, 366, 10)])
    assert audit.purge(T0 - timedelta(days=365)) == 2
    assert [e.at for e in audit.read(AuditQuery())] == [T0 - timedelta(days=10)]
    assert audit.purge(T0 - timedelta(days=365)) == 0


def test_hostile_text_is_stored_clean_and_bounded(audit: AuditLog) -> None:
    huge = "x" * 1_000_000
    markup = "<script>alert(1)</script> [red]boom[/red] ${jndi:ldap://e}"
    entry = audit_entry(
        T0,
        Origin("ev\x00il\x1b[31m" + "n" * 5000, "http", "1.2.3.4\x00"),
        "run.cancel",
        ["r\x00" + "1" * 5000, *(f"r{i}" for i in range(500))],
        {"reason": f"\x00{markup}\x07{huge}", **{f"k{i}": "v" * 900 for i in range(100)}},
        "\ud800" + huge,
    )
    audit.record([entry])
    (back,) = audit.read(AuditQuery())
    text = [back.actor, back.via, back.address or "", back.outcome, *back.targets]
    text += [str(v) for v in back.params.values()]
    assert not any(ch in t for t in text for ch in ("\x00", "\x1b", "\x07", "\ud800"))
    assert back.actor.startswith("evil[31m") and len(back.actor) <= MAX_NAME_CHARS
    assert back.address == "1.2.3.4"
    assert len(back.targets) == MAX_TARGETS + 1 and back.targets[-1] == "...[401 more targets]"
    assert all(len(t) <= MAX_NAME_CHARS for t in back.targets)
    reason = back.params["reason"]
    assert reason.startswith(markup) and "more characters cut" in reason  # markup kept as text
    assert len(reason) <= MAX_TEXT_CHARS and len(back.outcome) <= MAX_TEXT_CHARS
    import json

    assert len(json.dumps(back.params)) <= MAX_PARAMS_JSON


def test_migration_0013_adds_the_audit_log_and_goes_back(fresh_url: str) -> None:
    from wfray.adapters.sqlalchemy import migrate
    from wfray.adapters.sqlalchemy.audit import SqlAuditLog

    engine = sa.create_engine(fresh_url)
    try:
        migrate.upgrade(engine, "0012")
        assert "audit_log" not in sa.inspect(engine).get_table_names()
        migrate.upgrade(engine)  # through 0013 and what followed it
        log = SqlAuditLog(fresh_url, create=False)
        try:
            log.record([audit_entry(T0, CLI, "retention", (), {"older_than": "30d"}, "0 runs")])
            assert [e.action for e in log.read(AuditQuery())] == ["retention"]
        finally:
            log.close()
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(conn), "0012")
        assert "audit_log" not in sa.inspect(engine).get_table_names()
        assert {"outcome_quarantine", "runtime_envs"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
