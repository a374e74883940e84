"""Runs remember a hash of the request that claimed their idempotency key."""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    # Runs stored before have none: their keys are checked by workflow only.
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("request_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("request_hash")
