"""duplicate links

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 09:00:00.000000

A report may be linked to an earlier report of the same problem (``duplicate_of``); the
primary counts its duplicates; a duplicate's own publication time is kept on it, since it
has no delivery. An index serves the candidate query (deployment, category, time window).

SQLite: the self-referencing column is added with a plain ``ALTER TABLE ... ADD COLUMN ...
REFERENCES``, which SQLite supports, rather than a batch rebuild of ``reports``: the rebuild
drops the table, which the foreign keys of deliveries, events and ratings forbid once the
ledger holds reports.
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE reports ADD COLUMN duplicate_of INTEGER "
                   "CONSTRAINT fk_reports_duplicate_of REFERENCES reports (id)")
    else:
        op.add_column('reports', sa.Column('duplicate_of', sa.Integer(), nullable=True))
        op.create_foreign_key('fk_reports_duplicate_of', 'reports', 'reports', ['duplicate_of'], ['id'])
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.add_column(sa.Column('duplicate_count', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('published_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_reports_duplicate_of'), ['duplicate_of'], unique=False)
        batch_op.create_index('ix_reports_duplicate_window', ['deployment', 'category', 'created_at'], unique=False)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        # SQLite drops a referencing column only by rebuilding the table, which drops ``reports``:
        # allowed only with foreign keys off (pysqlite runs DDL outside a transaction, so this holds).
        op.execute("PRAGMA foreign_keys = OFF")
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.drop_index('ix_reports_duplicate_window')
        batch_op.drop_index(batch_op.f('ix_reports_duplicate_of'))
        if not sqlite:
            batch_op.drop_constraint('fk_reports_duplicate_of', type_='foreignkey')
        batch_op.drop_column('published_at')
        batch_op.drop_column('duplicate_count')
        batch_op.drop_column('duplicate_of')
    if sqlite:
        op.execute("PRAGMA foreign_keys = ON")
