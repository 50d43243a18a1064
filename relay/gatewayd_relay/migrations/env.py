"""Alembic environment: runs on the connection Database.migrate() hands over, or on
``sqlalchemy.url`` when the alembic command line is used by hand."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from gatewayd_relay.models import Base

config = context.config
connection = config.attributes.get("connection")


def run(conn: Connection) -> None:
    context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    with create_engine(config.get_main_option("sqlalchemy.url") or "").connect() as c:
        run(c)
        c.commit()
