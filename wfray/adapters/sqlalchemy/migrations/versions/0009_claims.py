"""Claims: named promises that one step does a side effect (domain/claims.py).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "claims",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("step", sa.String(), nullable=False),
        sa.Column("map_index", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result_json", sa.Text(), nullable=True),
        sa.Column("prev_run_id", sa.String(), nullable=True),
        sa.Column("prev_step", sa.String(), nullable=True),
        sa.Column("prev_map_index", sa.Integer(), nullable=True),
        sa.Column("prev_attempt", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_claims")),
    )
    op.create_index(op.f("ix_claims_run_id"), "claims", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_claims_run_id"), table_name="claims")
    op.drop_table("claims")
