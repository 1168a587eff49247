"""Back-off and lockout of admin-token guesses per client address (管理员令牌登录限速).

Kept in the database (``login_throttle``), so every instance shares it. One row per client
address; every attempt locks that row first, so guesses sent at once are counted one by one.
``FREE_FAILURES`` wrong tokens are allowed; the next lockout lasts ``FIRST_LOCK`` and each wrong
token after a lockout doubles it, up to ``MAX_LOCK``. While locked, no token is compared (the
right one included). A right token forgets the failures; so do ``FORGET_AFTER`` without any.
Each lockout is appended to the audit trail.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from storage import audit
from storage.models import LoginThrottle

FREE_FAILURES = 5
FIRST_LOCK = timedelta(minutes=1)
MAX_LOCK = timedelta(minutes=60)
FORGET_AFTER = timedelta(hours=24)  # longer than MAX_LOCK: waiting out a lockout does not reset the count


@dataclass(frozen=True)
class Attempt:
    ok: bool  # the token was compared and was right
    retry_after: timedelta | None = None  # locked: how long until the next attempt is compared


def lock_duration(failures: int) -> timedelta | None:
    if failures < FREE_FAILURES:
        return None
    return min(FIRST_LOCK * 2 ** (failures - FREE_FAILURES), MAX_LOCK)


def _lock_row(session: Session, client: str) -> LoginThrottle:
    """Insert the row if missing, then hold it for this transaction (serialises one client's guesses)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # On SQLite the INSERT also takes the database's write lock for the rest of the transaction.
    session.execute(insert(LoginThrottle).values(client=client, failures=0).on_conflict_do_nothing())
    return session.execute(select(LoginThrottle).where(LoginThrottle.client == client)
                           .with_for_update().execution_options(populate_existing=True)).scalar_one()


def attempt(session: Session, client: str, *, now: datetime, check: Callable[[], bool], via: str) -> Attempt:
    """Compare a token (``check``) for ``client`` unless it is locked out; count a wrong one.

    Runs in the caller's transaction, which should be a fresh one (on SQLite its first
    statement must be the write that takes the lock).
    """
    client = client[:64]
    row = _lock_row(session, client)
    if row.locked_until is not None and row.locked_until > now:
        return Attempt(False, row.locked_until - now)
    if row.last_failure_at is not None and now - row.last_failure_at > FORGET_AFTER:
        row.failures = 0
    if check():
        session.execute(delete(LoginThrottle).where(LoginThrottle.client == client))
        return Attempt(True)
    row.failures += 1
    row.last_failure_at = now
    lock = lock_duration(row.failures)
    if lock is None:
        session.flush()
        return Attempt(False)
    row.locked_until = now + lock
    minutes = int(lock.total_seconds() // 60)
    audit.record(session, actor="system", action="login_lockout", at=now,
                 reason=f"管理员令牌连续错误 {row.failures} 次，来源 {client} 锁定 {minutes} 分钟",
                 data={"client": client, "failures": row.failures, "locked_minutes": minutes, "via": via})
    session.flush()
    return Attempt(False, lock)


def locked_for(session: Session, client: str, *, now: datetime) -> timedelta | None:
    """How long ``client`` stays locked out (None when it is not), without counting anything."""
    row = session.get(LoginThrottle, client[:64])
    if row is not None and row.locked_until is not None and row.locked_until > now:
        return row.locked_until - now
    return None
