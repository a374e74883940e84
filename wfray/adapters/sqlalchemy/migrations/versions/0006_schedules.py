"""Cron schedules."""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("workflow", sa.String(), nullable=False),
        sa.Column("cron", sa.String(), nullable=False),
        sa.Column("tz", sa.String(), nullable=False),
        sa.Column("input_json", sa.Text(), nullable=False),
        sa.Column("queue", sa.String(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("misfire", sa.String(), nullable=False),
        sa.Column("catchup_window_s", sa.Float(), nullable=True),
        sa.Column("grace_s", sa.Float(), nullable=False),
        sa.Column("overlap", sa.String(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("last_fired", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_id", sa.String(), nullable=True),
        sa.Column("buffered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_schedules"),
    )
    op.create_index("ix_schedules_workflow", "schedules", ["workflow"])


def downgrade() -> None:
    op.drop_index("ix_schedules_workflow", table_name="schedules")
    op.drop_table("schedules")
