"""Runs started by events run in the runtime env of the client that subscribed: one row per
workflow and event it subscribes to, naming that env (domain/code_env.py).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("workflow", sa.String(), nullable=False),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("env_hash", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workflow", "event", name="pk_subscriptions"),
    )


def downgrade() -> None:
    op.drop_table("subscriptions")
