"""Who may use the dashboard (看板) and /api, as FastAPI dependencies.

A route declares its access in its signature:

- ``sess: Viewer``: a page, for any dashboard role (纪委监委, 管理员); without a session, the login page.
- ``sess: SessionForm``: a form posted from a dashboard page (logout): same origin (``same_origin``),
  a live session and that session's CSRF token; 403 otherwise.
- ``sess: Admin``: an administrator's action: a ``SessionForm`` of the admin role; 403 otherwise.
- ``form: PreSessionForm``: the login forms: same origin and the double-submit token ``PRE_COOKIE``.
- ``dependencies=[Depends(admin_token)]``: /api, ``Authorization: Bearer ADMIN_TOKEN``.

Admin tokens are compared through the per-address limiter (``storage.throttle``); links and
sessions are stored by ``storage.logins`` (only hashes).
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import math
from datetime import timedelta
from typing import Annotated, Iterator

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.orm import Session

from platforms.pages import check_origin  # shared with the local page
from storage import logins, throttle
from storage.logins import DashSession

log = logging.getLogger("qunzhi.dashboard")

COOKIE = "qz_session"
PRE_COOKIE = "qz_pre"  # double-submit token for the forms shown before a session exists
LOGIN_PATH = "/dashboard/login"


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


def cookie_kwargs(settings) -> dict:
    return {"httponly": True, "samesite": "strict", "secure": settings.public_base_url.startswith("https://"),
            "path": "/dashboard"}


def check_csrf(expected: str | None, given: str | None) -> None:
    if not expected or not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise HTTPException(403, "表单已失效，请刷新页面后重试")


# --- dependencies --------------------------------------------------------------------------------
# The checks that do no I/O are ``async def``: FastAPI then runs them on the event loop instead of
# sending each to the thread pool. Those that use the database are plain ``def``.
def runtime(request: Request):
    return request.app.state.runtime


def db_session(request: Request) -> Iterator[Session]:
    """The request's unit of work: committed when the route returns, rolled back when it raises."""
    with runtime(request).db.session() as s:
        yield s


DB = Annotated[Session, Depends(db_session)]


async def same_origin(request: Request) -> None:
    """A request that changes something comes from this site (``check_origin``, 403 otherwise)."""
    check_origin(request, runtime(request).settings)


async def posted_form(request: Request, _: Annotated[None, Depends(same_origin)]) -> dict[str, str]:
    """The fields of a posted form, read only after the origin check."""
    form = await request.form()
    return {k: str(v) for k, v in form.items()}


PostedForm = Annotated[dict[str, str], Depends(posted_form)]


async def pre_session_form(request: Request, form: PostedForm) -> dict[str, str]:
    """A login form: its CSRF token must be the ``PRE_COOKIE`` set when the form was shown."""
    check_csrf(request.cookies.get(PRE_COOKIE), form.get("csrf"))
    return form


PreSessionForm = Annotated[dict[str, str], Depends(pre_session_form)]


def current_session(request: Request, s: DB) -> DashSession | None:
    """The visitor's dashboard session, or None (none, expired, idle, or its person lost the role)."""
    sess = logins.load_session(s, request.cookies.get(COOKIE), runtime(request).now())
    if sess is None:
        s.commit()  # a session that load_session ended stays ended, whatever the route does next
    return sess


CurrentSession = Annotated[DashSession | None, Depends(current_session)]


class LoginRequired(Exception):
    """A page without a valid session: the visitor is sent to the login page (``routes.DashboardRoute``)."""


async def viewer(sess: CurrentSession) -> DashSession:
    """Pages: any dashboard role (纪委监委, 管理员); without a session, the login page."""
    if sess is None:
        raise LoginRequired()
    return sess


Viewer = Annotated[DashSession, Depends(viewer)]


async def admin_page(sess: Viewer) -> DashSession:
    """A page that only leads to an administrator action (the merge form): a viewer who is an
    administrator (403 otherwise); the action itself is checked again by ``admin``."""
    if not sess.is_admin:
        raise HTTPException(403, "只有管理员可以执行这个操作")
    return sess


AdminPage = Annotated[DashSession, Depends(admin_page)]


async def session_form(form: PostedForm, sess: CurrentSession) -> DashSession:
    """A form posted from a dashboard page: a live session, and that session's CSRF token (403)."""
    if sess is None:
        raise HTTPException(403, "登录已过期，请重新登录")
    check_csrf(sess.csrf, form.get("csrf"))
    return sess


SessionForm = Annotated[DashSession, Depends(session_form)]


async def admin(sess: SessionForm) -> DashSession:
    """Administrator actions: a posted dashboard form (``session_form``) of an administrator (403)."""
    if not sess.is_admin:
        raise HTTPException(403, "只有管理员可以执行这个操作")
    return sess


Admin = Annotated[DashSession, Depends(admin)]


def admin_token(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """/api: ``Authorization: Bearer ADMIN_TOKEN``, through the same per-address limiter as the
    dashboard login (401 when wrong or missing, 429 while locked out)."""
    given = (authorization or "").removeprefix("Bearer ").strip() if (authorization or "").startswith("Bearer ") else ""
    if not admin_token_attempt(runtime(request), request, given, via="api"):
        raise HTTPException(status_code=401, detail="需要管理员令牌（Authorization: Bearer …）",
                            headers={"WWW-Authenticate": "Bearer"})
