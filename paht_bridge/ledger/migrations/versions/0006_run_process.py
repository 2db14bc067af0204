"""the process a run's task ran in

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 09:00:00.000000

A task killed mid-run (kill -9, a lost worker) never writes its run's end: the next run of
the same step sees from the host and process id whether that task is gone, and marks the
abandoned run failed instead of showing it running for ever.
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("host", sa.String(255), nullable=True))
    op.add_column("runs", sa.Column("pid", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("pid")
        batch_op.drop_column("host")
