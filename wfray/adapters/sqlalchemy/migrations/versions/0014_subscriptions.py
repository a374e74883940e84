"""Runs started by events run in the runtime env of the client that subscribed: one row per
workflow and event it subscribes to, naming that env (domain/code_env.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"


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
