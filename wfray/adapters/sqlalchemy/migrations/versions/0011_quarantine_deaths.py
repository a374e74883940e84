"""Outcomes noted at a coordinator start count the starts whose coordinator went down while
applying them (a kill before it tried is no evidence against the outcome).
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    with op.batch_alter_table("outcome_quarantine") as batch:
        batch.add_column(sa.Column("deaths", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("outcome_quarantine") as batch:
        batch.drop_column("deaths")
