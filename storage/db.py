"""One place that builds the engine and sessions, and brings the schema up to date."""
from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str, **kwargs) -> Engine:
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the database up to the newest schema (no hand step needed)."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two instances starting together must not migrate at the same time.
            conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Database:
    """Engine plus session factory."""

    def __init__(self, url: str, *, migrate: bool = True, **engine_kwargs):
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        if migrate:
            upgrade(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._local = threading.local()
        self._own: weakref.WeakSet = weakref.WeakSet()  # what ``ingest_connection`` opened
        self._own_lock = threading.Lock()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on error."""
        s = self.sessions()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def ingest_connection(self):
        """PostgreSQL: this thread's own psycopg connection for the one-statement bulk ingest
        (``storage.ingest.one_statement``), taken out of the pool: in autocommit (the
        statement is its own transaction, no BEGIN/COMMIT round trips) and with generic plans
        for its prepared statements (the statement's plan does not depend on its JSON
        parameters, and planning it anew for every batch cost more than running it). Kept for
        the next batch; ``drop_ingest_connection`` after an error, ``dispose`` closes them all."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed:
            return conn
        # Outside the pool: its session settings must not reach the pool's other users.
        cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
        conn = self.engine.dialect.loaded_dbapi.connect(*cargs, **cparams)
        try:
            conn.autocommit = True
            conn.execute("SET plan_cache_mode = force_generic_plan")
        except BaseException:
            conn.close()
            raise
        with self._own_lock:
            self._own.add(conn)
        self._local.conn = conn
        return conn

    def drop_ingest_connection(self) -> None:
        """Close this thread's ingest connection (after an error: the next batch opens a new one;
        and when a writer thread ends)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def dispose(self) -> None:
        with self._own_lock:
            own, self._own = list(self._own), weakref.WeakSet()
        for conn in own:
            conn.close()
        self.engine.dispose()
