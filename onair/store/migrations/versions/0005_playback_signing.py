"""signed playback: stream playback_signed flag and per-stream playback secret

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:00:00
"""
import secrets

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('streams', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('playback_signed', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('playback_secret', sa.String(length=64), nullable=True))
    # every existing stream gets its own secret, then the column becomes NOT NULL
    streams = sa.table('streams', sa.column('id', sa.Integer()), sa.column('playback_secret', sa.String()))
    conn = op.get_bind()
    for (stream_id,) in conn.execute(sa.select(streams.c.id)).all():
        conn.execute(streams.update().where(streams.c.id == stream_id)
                     .values(playback_secret=secrets.token_hex(32)))
    # SQLite recreates the table for this: keep AUTOINCREMENT, or deleted stream ids would be reused
    with op.batch_alter_table('streams', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.alter_column('playback_secret', existing_type=sa.String(length=64), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('streams', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_column('playback_secret')
        batch_op.drop_column('playback_signed')
