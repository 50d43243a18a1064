"""The database: an engine for a URL (SQLite by default, PostgreSQL at scale), sessions, and
migrations to the newest schema with Alembic before a process serves anything."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy's default would be psycopg2)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 15})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The sqlite3 module's own transaction handling is off: it begins a transaction only at
    # the first INSERT/UPDATE, and the release of an outer SAVEPOINT commits; a session
    # would be several transactions. SQLAlchemy says BEGIN instead (_sqlite_begin).
    dbapi_conn.isolation_level = None
    # WAL: several relay processes may share one file; a backup never waits for a writer.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=15000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE: a session takes the write lock when it begins, waiting its turn (busy
    # timeout) behind the one writer of the moment. A deferred transaction that has read
    # and then writes fails at once ("database is locked", SQLITE_BUSY_SNAPSHOT) when
    # another connection committed in between, busy timeout or not: the ingest lost a
    # door.unlocked event that way whenever the tap's own write landed between its reads
    # and its insert. Every session waits its turn, reads included: they are short, and
    # the order is SQLite's anyway (one writer at a time).
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def rows_changed(s: Session, stmt: Any) -> int:
    """Execute a guarded UPDATE; how many rows it changed (0: the guard did not hold, e.g.
    another process got there first)."""
    return int(cast(CursorResult[Any], s.execute(stmt)).rowcount)


class Database:
    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(url)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on an exception."""
        with self._factory() as s, s.begin():
            yield s

    def migrate(self) -> None:
        """Bring the schema to the newest revision (a no-op when it is there already)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()
