"""An attempt is either of a step or of its compensation."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("kind", sa.String(), nullable=False, server_default="step"))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("kind")
