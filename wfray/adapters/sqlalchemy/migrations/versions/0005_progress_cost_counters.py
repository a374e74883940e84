"""Heartbeat progress on tasks, resources held per attempt, trigger ids, named counters."""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("progress_json", sa.Text(), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("resources_json", sa.Text(), nullable=True))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("trigger_id", sa.String(), nullable=True))
        batch.create_index("ix_runs_parent_run_id", ["parent_run_id"])
    op.create_table(
        "counters",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_counters"),
    )


def downgrade() -> None:
    op.drop_table("counters")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_parent_run_id")
        batch.drop_column("trigger_id")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("resources_json")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("progress_json")
