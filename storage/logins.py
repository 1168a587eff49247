"""Dashboard logins (看板登录): one-time links sent by the 看板 command and dashboard sessions.

Only sha256 hashes of tokens are stored (``login_tokens``). A link is good for ``LINK_MINUTES``
and once; a session lasts at most ``SESSION_HOURS`` and ends after ``IDLE_MINUTES`` without a
request. The web side (cookies, CSRF, who may see what) is ``bot.dashboard.auth``.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from storage.models import LoginToken, Person

LINK_MINUTES = 15
SESSION_HOURS = 8
IDLE_MINUTES = 30
DASHBOARD_ROLES = ("commission", "admin")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_link(session: Session, person: Person, now: datetime, base_url: str,
               valid: timedelta = timedelta(minutes=LINK_MINUTES)) -> str | None:
    """A one-time login link good for ``valid`` (only its hash is stored); None for people without
    the role. The chat command's links last LINK_MINUTES; the kept demo's (printed in a terminal of
    a local install, which has no admin token) a little longer."""
    if person.role not in DASHBOARD_ROLES:
        return None
    token = secrets.token_urlsafe(32)
    session.add(LoginToken(token_hash=token_hash(token), kind="link", person_id=person.id, role=person.role,
                           created_at=now, expires_at=now + valid))
    session.flush()
    return f"{base_url.rstrip('/')}/dashboard/login/{token}"


def link_valid(session: Session, token: str, now: datetime) -> LoginToken | None:
    row = session.get(LoginToken, token_hash(token))
    if row is None or row.kind != "link" or row.used_at is not None or row.expires_at <= now:
        return None
    return row


class NotAViewer(Exception):
    """The link was good, but its person no longer holds a dashboard role."""


def redeem_link(session: Session, token: str, now: datetime) -> Person | None:
    """Use up a one-time link: its person, or None when the link is unknown, used or expired.
    Raises ``NotAViewer`` when the person lost the role since (the caller's rollback then keeps
    the link unused)."""
    row = link_valid(session, token, now)
    if row is None:
        return None
    row.used_at = now
    session.flush()
    person = session.get(Person, row.person_id) if row.person_id else None
    if person is None or person.role not in DASHBOARD_ROLES:
        raise NotAViewer(row.person_id)
    return person


@dataclass
class DashSession:
    token: str
    role: str
    person_id: str | None
    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def start_session(session: Session, *, role: str, person_id: str | None, now: datetime) -> DashSession:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    session.add(LoginToken(token_hash=token_hash(token), kind="session", person_id=person_id, role=role,
                           created_at=now, expires_at=now + timedelta(hours=SESSION_HOURS), used_at=now, csrf=csrf))
    # housekeeping: forget long-expired tokens
    session.execute(delete(LoginToken).where(LoginToken.expires_at < now - timedelta(days=1)))
    session.flush()
    return DashSession(token, role, person_id, csrf)


def load_session(session: Session, token: str | None, now: datetime) -> DashSession | None:
    if not token:
        return None
    row = session.get(LoginToken, token_hash(token))
    if row is None or row.kind != "session" or row.expires_at <= now:
        return None
    if row.used_at is not None and now - row.used_at > timedelta(minutes=IDLE_MINUTES):
        return None
    if row.person_id is not None:
        # The role is read again on every request: a demoted member loses access at once, and
        # the session ends for good (a later promotion needs a new link). An admin-token session
        # has no person and keeps the role "admin".
        person = session.get(Person, row.person_id)
        if person is None or person.role not in DASHBOARD_ROLES:
            session.delete(row)
            session.flush()
            return None
        row.role = person.role
    row.used_at = now
    return DashSession(token, row.role, row.person_id, row.csrf or "")


def end_session(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(LoginToken).where(LoginToken.token_hash == token_hash(token)))
