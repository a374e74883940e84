"""Code travels with the run: runtime environments stored once per content hash, and the
references of runs and schedules to the one their steps run in (domain/code_env.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    op.create_table(
        "runtime_envs",
        sa.Column("env_hash", sa.String(64), nullable=False),
        sa.Column("env_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("env_hash", name="pk_runtime_envs"),
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("env_hash", sa.String(64), nullable=True))
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(sa.Column("env_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("env_hash")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("env_hash")
    op.drop_table("runtime_envs")
