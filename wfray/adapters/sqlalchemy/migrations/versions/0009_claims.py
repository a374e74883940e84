"""Claims: named promises that one step does a side effect (domain/claims.py)."""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


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
