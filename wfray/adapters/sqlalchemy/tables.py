"""The schema, in SQLAlchemy Core. The migrations in `migrations/versions` must match it.

Statuses are plain strings (the domain owns the values; no database enums to migrate).
Datetimes are `timestamptz` on PostgreSQL and naive UTC text on SQLite, both read back as
aware UTC by `UtcDateTime`. JSON payloads are `Text`: results and inputs can be large.
"""

from __future__ import annotations

import sqlalchemy as sa

from wfray.adapters.sqlalchemy.rows import UtcDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)

# 64-bit ids on PostgreSQL; SQLite only autoincrements an INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

workflows = sa.Table(
    "workflows",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("version", sa.String, primary_key=True),
    # Save order: the latest version of a name is the one with the highest seq.
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("schema_json", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_workflows_name_seq", "name", "seq"),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("workflow", sa.String, nullable=False),
    sa.Column("version", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("input_json", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("queue", sa.String, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("idempotency_key", sa.String, nullable=True, unique=True),
    sa.Column("concurrency_key", sa.String, nullable=True),
    sa.Column("parent_run_id", sa.String, nullable=True),
    sa.Column("trigger", sa.String, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=True),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.Column("result_json", sa.Text, nullable=True),
    sa.Column("result_ref", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("retry_json", sa.Text, nullable=True),
    sa.Column("deadline_at", UtcDateTime, nullable=True),
    # What started the run beyond its kind (`trigger`): an event id, a schedule tick.
    sa.Column("trigger_id", sa.String, nullable=True),
    # A hash of what a request with an idempotency key asked for (0008).
    sa.Column("request_hash", sa.String(64), nullable=True),
    # Not unique: a policy may start a new run once the key's run finished (uniqueness.py).
    sa.Column("unique_key", sa.String, nullable=True),
    # The runtime environment its steps run in, by content hash (runtime_envs, 0012).
    sa.Column("env_hash", sa.String(64), nullable=True),
    sa.Index("ix_runs_workflow_status_created_at", "workflow", "status", "created_at"),
    sa.Index("ix_runs_status", "status"),
    sa.Index("ix_runs_created_at", "created_at"),
    sa.Index("ix_runs_deadline_at", "deadline_at"),
    sa.Index("ix_runs_parent_run_id", "parent_run_id"),
    sa.Index("ix_runs_unique_key", "unique_key", "workflow"),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column(
        "run_id",
        sa.String,
        sa.ForeignKey("runs.run_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("step", sa.String, primary_key=True),
    sa.Column("map_index", sa.Integer, primary_key=True),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("pool", sa.String, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("queue", sa.String, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("concurrency_key", sa.String, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("lost", sa.Integer, nullable=False),
    sa.Column("map_count", sa.Integer, nullable=True),
    sa.Column("ready_at", UtcDateTime, nullable=True),
    sa.Column("queued_at", UtcDateTime, nullable=True),
    sa.Column("started_at", UtcDateTime, nullable=True),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.Column("result_json", sa.Text, nullable=True),
    sa.Column("result_ref", sa.Text, nullable=True),
    sa.Column("result_items", sa.Integer, nullable=True),
    sa.Column("error_type", sa.String, nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    # The last progress a running step reported with its heartbeat, and when.
    sa.Column("progress_json", sa.Text, nullable=True),
    sa.Column("heartbeat_at", UtcDateTime, nullable=True),
)
# Paging the queued backlog: WHERE status, queue ORDER BY priority DESC, seq ASC.
sa.Index(
    "ix_tasks_status_queue_priority_seq",
    tasks.c.status,
    tasks.c.queue,
    tasks.c.priority.desc(),
    tasks.c.seq,
)
# max_task_seq at start-up must not scan a million rows.
sa.Index("ix_tasks_seq", tasks.c.seq)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("step", sa.String, primary_key=True),
    sa.Column("map_index", sa.Integer, primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("executor", sa.String, nullable=False),
    sa.Column("incarnation", sa.String, nullable=False),
    sa.Column("queued_at", UtcDateTime, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=True),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.Column("node_id", sa.String, nullable=True),
    sa.Column("worker_id", sa.String, nullable=True),
    sa.Column("host", sa.String, nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("error_type", sa.String, nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("traceback", sa.Text, nullable=True),
    sa.Column("kind", sa.String, nullable=False, server_default="step"),
    # What the attempt held while it ran ({"CPU": 1, "io": 1}): resource-seconds = this x wall time.
    sa.Column("resources_json", sa.Text, nullable=True),
    sa.ForeignKeyConstraint(
        ["run_id", "step", "map_index"],
        ["tasks.run_id", "tasks.step", "tasks.map_index"],
        ondelete="CASCADE",
    ),
    sa.Index("ix_attempts_status", "status"),
)

# No foreign key on logs: a late log line must never fail the batch it travels in.
logs = sa.Table(
    "logs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # A hash of the line and its occurrence in its batch: a replayed batch inserts nothing.
    sa.Column("line_key", sa.String(32), nullable=False, unique=True),
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("step", sa.String, nullable=False),
    sa.Column("map_index", sa.Integer, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("ts", UtcDateTime, nullable=False),
    sa.Column("level", sa.String, nullable=False),
    sa.Column("logger", sa.String, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("ix_logs_run_id_step", "run_id", "step"),
)

# Runtime environments (domain/code_env.py), stored once per content hash: package URIs,
# requirements, names of variables; never the variables' values.
runtime_envs = sa.Table(
    "runtime_envs",
    metadata,
    sa.Column("env_hash", sa.String(64), primary_key=True),
    sa.Column("env_json", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# Event subscriptions (a workflow's `events`): the runtime env the runs an event starts run
# in, that of the latest client with one that registered the workflow (0014).
subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("workflow", sa.String, primary_key=True),
    sa.Column("event", sa.String, primary_key=True),
    sa.Column("env_hash", sa.String(64), nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# Small key/value facts about the installation (for the coordinator lease, later).
meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


# Named monotonic counters (invoice numbers): values are never handed out twice; gaps allowed.
counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)


# Claims (domain/claims.py): one row per key, written compare-and-set on `version`. The
# holder is the attempt holding it; prev_* the dead holder it was taken over from.
claims = sa.Table(
    "claims",
    metadata,
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("step", sa.String, nullable=False),
    sa.Column("map_index", sa.Integer, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("claimed_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("done_at", UtcDateTime, nullable=True),
    sa.Column("result_json", sa.Text, nullable=True),
    sa.Column("prev_run_id", sa.String, nullable=True),
    sa.Column("prev_step", sa.String, nullable=True),
    sa.Column("prev_map_index", sa.Integer, nullable=True),
    sa.Column("prev_attempt", sa.Integer, nullable=True),
    sa.Index("ix_claims_run_id", "run_id"),
)


# Cron schedules (domain/schedule.py): the spec's fields, then how far the schedule fired.
schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("workflow", sa.String, nullable=False),
    sa.Column("cron", sa.String, nullable=False),
    sa.Column("tz", sa.String, nullable=False),
    sa.Column("input_json", sa.Text, nullable=False),
    sa.Column("queue", sa.String, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("misfire", sa.String, nullable=False),
    sa.Column("catchup_window_s", sa.Float, nullable=True),
    sa.Column("grace_s", sa.Float, nullable=False),
    sa.Column("overlap", sa.String, nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False),
    sa.Column("unique_key", sa.String, nullable=True),
    # The runtime env its runs' steps run in, by content hash (runtime_envs, 0012).
    sa.Column("env_hash", sa.String(64), nullable=True),
    # The latest tick handled; compare-and-set guards it against a racing scheduler.
    sa.Column("last_fired", UtcDateTime, nullable=False),
    sa.Column("last_run_id", sa.String, nullable=True),
    sa.Column("buffered_at", UtcDateTime, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_schedules_workflow", "workflow"),
)


# Quarantined outcomes (coordinator/poison.py), and the marks that lead there: `pending`
# while undelivered at a coordinator start (of `epoch`), `applying` once a coordinator began
# applying it; `quarantined` when coordinators went down applying it at as many starts as
# WFRAY_QUARANTINE_AFTER_DEATHS allows, `refused` when the database refused what it held.
outcome_quarantine = sa.Table(
    "outcome_quarantine",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("step", sa.String, primary_key=True),
    sa.Column("map_index", sa.Integer, primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # starts whose coordinator went down while applying the outcome (coordinator/poison.py)
    sa.Column("deaths", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_outcome_quarantine_status", "status"),
)

# The audit trail (domain/audit.py): operator actions, appended only, purged by age.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("via", sa.String(200), nullable=False),
    sa.Column("address", sa.String(200), nullable=True),
    sa.Column("action", sa.String(200), nullable=False),
    sa.Column("targets_json", sa.Text, nullable=False),
    sa.Column("params_json", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Index("ix_audit_log_at", "at"),
    sa.Index("ix_audit_log_actor_id", "actor", "id"),
    sa.Index("ix_audit_log_action_id", "action", "id"),
)
