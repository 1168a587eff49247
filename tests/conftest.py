"""Shared fixtures: real databases (SQLite always, PostgreSQL when configured), a clock,
a runtime and a test client, and a guard that fails any connection off this machine."""
from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from config.settings import Settings
from storage.db import Database
from storage.models import Base

# CI explores the same examples every run (a landing must not depend on a lucky draw); a local run
# and the heavy fuzz run (benchmarks/run_heavy.py) keep drawing new ones.
from hypothesis import settings as _hypothesis_settings

_hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci")

PG_ENV = "QUNZHI_TEST_DATABASE_URL"
PG_URL = os.environ.get(PG_ENV)
PG_SKIP = f"PostgreSQL not configured: set {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"

# --- network guard -------------------------------------------------------------------------
_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and self.family in (socket.AF_INET, socket.AF_INET6):
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if host != "localhost" and (ip is None or not ip.is_loopback):
            raise RuntimeError(f"test tried to reach the network: {address!r}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True, scope="session")
def _network_guard():
    socket.socket.connect = _guarded_connect
    yield
    socket.socket.connect = _real_connect


@pytest.fixture(autouse=True)
def _no_cached_identities():
    """storage.identity remembers natural accounts per process; each test starts without."""
    from storage import identity

    identity.forget_natural()


@pytest.fixture(autouse=True)
def _metrics_directory_stays_put():
    """``qunzhi serve`` points prometheus-client at a directory through the environment
    (telemetry.configure); a test that runs serve in-process must not leave it to the next."""
    before = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    yield
    if before is None:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = before


# --- clock ---------------------------------------------------------------------------------
class Clock:
    """An injectable clock: ``clock()`` returns now; ``clock.advance(days=1)`` moves it."""

    def __init__(self, now: datetime | None = None):
        self.now = now or datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)  # Monday 10:00 in Beijing

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw) -> datetime:
        self.now += timedelta(**kw)
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when


@pytest.fixture
def clock() -> Clock:
    return Clock()


# --- databases -----------------------------------------------------------------------------
_SCHEMA = f"qz_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def _pg_database() -> Database:
    """Each test session gets its own PostgreSQL schema, so parallel runs do not collide."""
    from sqlalchemy import create_engine

    admin = create_engine(PG_URL)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{_SCHEMA}"'))
    admin.dispose()
    sep = "&" if "?" in PG_URL else "?"
    # The schema rides in the URL, so a CLI or a subprocess given ``db.url`` lands in it too.
    return Database(f"{PG_URL}{sep}options=-csearch_path%3D{_SCHEMA}")


@pytest.fixture(scope="session")
def _pg_db():
    if not PG_URL:
        pytest.skip(PG_SKIP)
    db = _pg_database()
    yield db
    db.dispose()
    from sqlalchemy import create_engine

    admin = create_engine(PG_URL)
    with admin.begin() as c:
        c.execute(text(f'DROP SCHEMA IF EXISTS "{_SCHEMA}" CASCADE'))
    admin.dispose()


def _truncate(db: Database) -> None:
    from storage import identity

    identity.forget_natural()  # its cache of natural accounts assumes rows never vanish
    names = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with db.engine.begin() as c:
        extra = [n for n in ("apscheduler_jobs",) if db.engine.dialect.has_table(c, n)]
        if db.dialect == "postgresql":
            c.execute(text("TRUNCATE " + ", ".join(f'"{n}"' for n in names + extra) + " RESTART IDENTITY CASCADE"))
        else:
            for n in names + extra:
                c.execute(text(f'DELETE FROM "{n}"'))


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> Database:
    """A migrated, empty database: every test using it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        d = Database(f"sqlite:///{tmp_path / 'qunzhi.db'}")
        yield d
        d.dispose()
    else:
        d = request.getfixturevalue("_pg_db")
        _truncate(d)
        yield d


@pytest.fixture
def sqlite_db(tmp_path) -> Database:
    d = Database(f"sqlite:///{tmp_path / 'qunzhi.db'}")
    yield d
    d.dispose()


# --- settings, runtime, client ---------------------------------------------------------------
# Tencent's official sample values (see shared/docs/wecom.md).
WECOM_TOKEN = "QDG6eK"
WECOM_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
WECOM_CORP_ID = "wx5823bf96d3bd56c7"
AIBOT_TOKEN = "aibotTokenForTests"
AIBOT_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
BRIDGE_SECRET = "bridge-secret-for-tests"
ADMIN_TOKEN = "admin-token-for-tests"


def make_settings(**overrides) -> Settings:
    values = dict(
        environment="development", database_url="sqlite://", wecom_corp_id=WECOM_CORP_ID,
        wecom_token=WECOM_TOKEN, wecom_aes_key=WECOM_AES_KEY, wecom_agent_id="218", wecom_secret="secret-for-tests",
        wecom_api_base="http://127.0.0.1:9/cgi-bin/", aibot_token=AIBOT_TOKEN, aibot_aes_key=AIBOT_AES_KEY,
        bridge_secret=BRIDGE_SECRET, bridge_url="http://127.0.0.1:9/bridge", admin_token=ADMIN_TOKEN,
        run_scheduler=False,
        ingest_writer="thread",  # runtimes here are given their database and clock (see bot/runtime.py)
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def runtime(db, settings, clock):
    from bot.runtime import Runtime

    settings = settings.model_copy(update={"database_url": db.url})
    return Runtime(settings, db=db, clock=clock)


@pytest.fixture
def client(runtime):
    from fastapi.testclient import TestClient

    from bot.app import create_app

    app = create_app(runtime=runtime, start_scheduler=False)
    with TestClient(app) as c:
        yield c


# --- fakes (tests/fakes/fixtures.py: fake_wecom) -----------------------------------------------
pytest_plugins = ["tests.fakes.fixtures"]
