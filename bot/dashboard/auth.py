"""Dashboard access: admin-token login, one-time links (看板), sessions, CSRF and origin checks.

Only sha256 hashes of tokens are stored (``login_tokens``). A session lasts at most
``SESSION_HOURS`` and ends after ``IDLE_MINUTES`` without a request.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import HTTPException, Request
from sqlalchemy import delete
from sqlalchemy.orm import Session

from handlers.commands.dashboard import DASHBOARD_ROLES as ROLES
from handlers.commands.dashboard import LINK_MINUTES, issue_link, token_hash  # noqa: F401
from platforms.pages import check_origin  # noqa: F401 (shared with the local page)
from storage import throttle
from storage.models import LoginToken, Person

log = logging.getLogger("qunzhi.dashboard")

SESSION_HOURS = 8
IDLE_MINUTES = 30
COOKIE = "qz_session"
PRE_COOKIE = "qz_pre"  # double-submit token for the forms shown before a session exists


def link_valid(session: Session, token: str, now: datetime) -> LoginToken | None:
    row = session.get(LoginToken, token_hash(token))
    if row is None or row.kind != "link" or row.used_at is not None or row.expires_at <= now:
        return None
    return row


def consume_link(session: Session, token: str, now: datetime) -> LoginToken | None:
    row = link_valid(session, token, now)
    if row is not None:
        row.used_at = now
        session.flush()
    return row


def check_admin_token(settings, given: str) -> bool:
    expected = settings.admin_token or ""
    return bool(expected) and hmac.compare_digest(expected.encode(), (given or "").strip().encode())


def client_address(request: Request, settings) -> str:
    """The peer's address, or the X-Forwarded-For hop appended by a proxy in QUNZHI_TRUSTED_PROXIES.

    The header is read right to left: the rightmost hop was appended by the peer (a trusted
    proxy), and each trusted hop vouches for the one left of it; the first untrusted address
    from the right is the client. From any other peer the header is ignored.
    """
    peer = request.client.host if request.client else ""
    networks = settings.trusted_networks

    def trusted(host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in n for n in networks)

    if not networks or not trusted(peer):
        return peer or "unknown"
    addr = peer
    hops = [h.strip() for v in request.headers.getlist("x-forwarded-for") for h in v.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            hop = str(ipaddress.ip_address(hop))
        except ValueError:
            break  # garbage left of a trusted hop: the last trusted hop is all we know
        addr = hop
        if not trusted(hop):
            break
    return addr


class Locked(HTTPException):
    """Too many wrong admin tokens from this address: 429 with a Chinese message."""

    def __init__(self, retry_after: timedelta):
        seconds = max(1, math.ceil(retry_after.total_seconds()))
        super().__init__(429, f"尝试次数过多，请{math.ceil(seconds / 60)}分钟后再试",
                         headers={"Retry-After": str(seconds)})


def admin_token_attempt(rt, request: Request, given: str, *, via: str) -> bool:
    """Compare an admin token through the per-address limiter: True when right, False when wrong;
    raises ``Locked`` while the address is locked out (the token is then not compared).
    An empty token is no guess: it is refused without being counted, but not while locked."""
    client = client_address(request, rt.settings)
    given = (given or "").strip()
    with rt.db.session() as s:
        result = throttle.attempt(s, client, now=rt.now(), via=via,
                                  check=lambda: check_admin_token(rt.settings, given)) if given else None
        if result is None:
            locked = throttle.locked_for(s, client, now=rt.now())
            if locked:
                raise Locked(locked)
            return False
    if result.retry_after is not None:
        log.warning("admin token refused from %s (%s): locked out for %s", client, via, result.retry_after)
        raise Locked(result.retry_after)
    if not result.ok:
        log.info("wrong admin token from %s (%s)", client, via)
    return result.ok


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
        if person is None or person.role not in ROLES:
            session.delete(row)
            session.flush()
            return None
        row.role = person.role
    row.used_at = now
    return DashSession(token, row.role, row.person_id, row.csrf or "")


def end_session(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(LoginToken).where(LoginToken.token_hash == token_hash(token)))


def cookie_kwargs(settings) -> dict:
    return {"httponly": True, "samesite": "strict", "secure": settings.public_base_url.startswith("https://"),
            "path": "/dashboard"}


def check_csrf(expected: str | None, given: str | None) -> None:
    if not expected or not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise HTTPException(403, "表单已失效，请刷新页面后重试")
