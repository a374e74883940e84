"""Outcomes set aside: refused by the database, or undelivered at two coordinator starts."""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "outcome_quarantine",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("step", sa.String(), nullable=False),
        sa.Column("map_index", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "run_id", "step", "map_index", "attempt", name=op.f("pk_outcome_quarantine")
        ),
    )
    op.create_index(
        op.f("ix_outcome_quarantine_status"), "outcome_quarantine", ["status"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_outcome_quarantine_status"), table_name="outcome_quarantine")
    op.drop_table("outcome_quarantine")
