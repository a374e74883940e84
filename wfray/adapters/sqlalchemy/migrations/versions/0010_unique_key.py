"""Runs (and the schedules that start them) carry their workflow's uniqueness key.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


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
