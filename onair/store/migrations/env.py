"""Alembic environment: run by onair.store.db.migrate with a live connection, or by the alembic CLI."""

from alembic import context
from sqlalchemy import create_engine

from onair.store.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        # CLI use (e.g. `alembic revision --autogenerate`): a sync URL given with -x url=...
        url = context.get_x_argument(as_dictionary=True)["url"]
        with create_engine(url).connect() as conn:
            context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
