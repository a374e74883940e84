"""Runs (and the schedules that start them) carry their workflow's uniqueness key."""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    # Runs stored before have none: no uniqueness policy applies to them.
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("unique_key", sa.String(), nullable=True))
        batch.create_index("ix_runs_unique_key", ["unique_key", "workflow"])
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(sa.Column("unique_key", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("unique_key")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_unique_key")
        batch.drop_column("unique_key")
