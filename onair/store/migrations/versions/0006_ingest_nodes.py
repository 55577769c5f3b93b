"""cluster: the node receiving each feed of a live stream

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 07:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite recreates the table for this: keep AUTOINCREMENT, or deleted stream ids would be reused
    with op.batch_alter_table('streams', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('ingest_node_primary', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('ingest_node_backup', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('streams', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_column('ingest_node_backup')
        batch_op.drop_column('ingest_node_primary')
