"""The dashboard (看板): server-rendered Chinese pages under /dashboard for commissions and admins."""
from __future__ import annotations

import inspect
import io
import json
import secrets
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

from starlette.concurrency import run_in_threadpool
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from sqlalchemy import func, or_, select

from bot.dashboard import actions, auth
from governance import labels
from storage import reports
from storage.audit import verify
from storage.lifecycle import findings_computed_at
from storage.models import (AuditRecord, FindingRecord, FormalismReport, Group, Person, PulseResponse, StatSnapshot,
                            UselessVote)

HERE = Path(__file__).parent
STATIC = HERE / "static"
STATIC_TYPES = {".js": "application/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".txt": "text/plain; charset=utf-8", ".svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
                               "object-src 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
DEFAULT_TZ = ZoneInfo("Asia/Shanghai")  # pages get the configured zone as ``tz`` (see _render)
env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
env.filters["dt"] = pass_context(lambda ctx, v: labels.fmt_dt(v, ctx.get("tz") or DEFAULT_TZ))  # local time
env.filters["day"] = pass_context(lambda ctx, v: labels.fmt_day(v, ctx.get("tz") or DEFAULT_TZ))  # local date
env.filters["kind_name"] = labels.kind
env.filters["status_name"] = labels.status
env.filters["action_name"] = labels.action
env.globals["kind_names"] = labels.FINDING_KINDS  # every kind, those of anonymous votes included
env.globals["status_names"] = labels.GROUP_STATUSES
env.globals["finding_status_names"] = labels.FINDING_STATUSES
env.globals["actor_name"] = labels.actor
env.globals["role_name"] = labels.role
env.globals["audit_reason"] = labels.audit_reason


class SecureRoute(APIRoute):
    """Adds the security headers to every response of the router (errors included)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def secured(request: Request) -> Response:
            try:
                response = await handler(request)
            except HTTPException as e:
                response = HTMLResponse(_render("message.html", request, None, title="无法完成", message=e.detail),
                                        status_code=e.status_code)
            for k, v in SECURITY_HEADERS.items():
                if k == "Cache-Control" and request.url.path.startswith("/dashboard/static/"):
                    continue
                response.headers.setdefault(k, v)
            return response

        return secured


router = APIRouter(prefix="/dashboard", route_class=SecureRoute)


def _rt(request: Request):
    return request.app.state.runtime


def _render(name: str, request: Request, sess: auth.DashSession | None, **ctx) -> str:
    ctx.setdefault("tz", _rt(request).settings.tz)
    return env.get_template(name).render(request=request, sess=sess, path=request.url.path,
                                         findings_at=_findings_label(request), **ctx)


def _local(at, tz) -> str:
    t = labels.local_dt(at, tz)  # never fails on a stored far date
    return f"{t.year}年{t.month}月{t.day}日 {t:%H:%M}"


def _findings_label(request: Request) -> str | None:
    """“问题清单更新于 …（北京时间）” for the page header (set by ``_require`` from ``finding_refreshes``)."""
    stamps = getattr(request.state, "findings_at", None)
    if stamps is None:
        return None
    full = stamps.get("full")
    if full is None:
        return "问题清单尚未生成（每小时自动更新）"
    tz = _rt(request).settings.tz
    zone = "北京时间" if getattr(tz, "key", "") in ("Asia/Shanghai", "Asia/Chongqing", "PRC") else str(tz)
    return (f"问题清单更新于 {_local(full, tz)}（{zone}），每小时全面更新；"
            "此后保留、续期、完成、登记等操作涉及的群已即时更新")


def _page(name: str, request: Request, sess, **ctx) -> HTMLResponse:
    return HTMLResponse(_render(name, request, sess, **ctx))


def _require(request: Request, s, *, admin: bool = False) -> auth.DashSession:
    rt = _rt(request)
    sess = auth.load_session(s, request.cookies.get(auth.COOKIE), rt.now())
    if sess is None:
        raise _Login()
    if admin and not sess.is_admin:
        raise HTTPException(403, "只有管理员可以执行这个操作")
    request.state.findings_at = findings_computed_at(s)
    return sess


class _Login(Exception):
    """No valid dashboard session: the visitor is sent to the login page."""


def _guard(fn):
    """Run a page with a database session; unauthenticated visitors go to the login page."""
    import functools

    @functools.wraps(fn)
    def wrapper(request: Request, *a, **kw):
        rt = _rt(request)
        with rt.db.session() as s:
            try:
                return fn(request, s, *a, **kw)
            except _Login:
                pass  # committed: a session that load_session ended stays ended
        return RedirectResponse("/dashboard/login", status_code=303)

    sig = inspect.signature(fn)
    wrapper.__signature__ = sig.replace(parameters=[p for n, p in sig.parameters.items() if n != "s"])
    return wrapper


async def _form(request: Request) -> dict:
    form = await request.form()
    return {k: str(v) for k, v in form.items()}


# --- static files (no CDN: everything the pages load comes from here) ----------------------------
@router.get("/static/{name}")
def static(name: str) -> Response:
    path = (STATIC / name).resolve()
    if path.parent != STATIC.resolve() or not path.is_file() or path.suffix not in STATIC_TYPES:
        raise HTTPException(404, "没有这个文件")
    return Response(path.read_bytes(), media_type=STATIC_TYPES[path.suffix],
                    headers={"Cache-Control": "public, max-age=3600"})


# --- login / logout ------------------------------------------------------------------------------
def _pre_token(request: Request) -> tuple[str, bool]:
    tok = request.cookies.get(auth.PRE_COOKIE)
    return (tok, False) if tok else (secrets.token_urlsafe(24), True)


def _with_pre(resp: Response, request: Request, tok: str, new: bool) -> Response:
    if new:
        resp.set_cookie(auth.PRE_COOKIE, tok, max_age=3600, **auth.cookie_kwargs(_rt(request).settings))
    return resp


@router.get("/login")
def login_form(request: Request, error: str | None = None) -> Response:
    tok, new = _pre_token(request)
    return _with_pre(_page("login.html", request, None, csrf=tok, error=error), request, tok, new)


def _start(request: Request, s, role: str, person_id: str | None) -> Response:
    rt = _rt(request)
    sess = auth.start_session(s, role=role, person_id=person_id, now=rt.now())
    resp = RedirectResponse("/dashboard", status_code=303)
    resp.set_cookie(auth.COOKIE, sess.token, max_age=auth.SESSION_HOURS * 3600, **auth.cookie_kwargs(rt.settings))
    resp.delete_cookie(auth.PRE_COOKIE, path="/dashboard")
    return resp


@router.post("/login")
async def login(request: Request) -> Response:
    rt = _rt(request)
    auth.check_origin(request, rt.settings)
    form = await _form(request)
    auth.check_csrf(request.cookies.get(auth.PRE_COOKIE), form.get("csrf"))
    tok, new = _pre_token(request)
    try:
        # blocking (the limiter's row lock may wait for another instance): off the event loop
        ok = await run_in_threadpool(auth.admin_token_attempt, rt, request, form.get("token", ""), via="dashboard")
    except auth.Locked as e:
        return _with_pre(HTMLResponse(_render("login.html", request, None, csrf=tok, error=e.detail),
                                      status_code=429, headers=e.headers), request, tok, new)
    if not ok:
        return _with_pre(HTMLResponse(_render("login.html", request, None, csrf=tok, error="令牌不正确"),
                                      status_code=403), request, tok, new)
    with rt.db.session() as s:
        return _start(request, s, "admin", None)


@router.get("/login/{token}")
def link_form(request: Request, token: str) -> Response:
    """Show a confirm button: link previews in chat apps must not use up the one-time link."""
    rt = _rt(request)
    with rt.db.session() as s:
        ok = auth.link_valid(s, token, rt.now()) is not None
    if not ok:
        return HTMLResponse(_render("message.html", request, None, title="链接已失效",
                                    message="登录链接已使用或已过期（15分钟内有效）。请在企业微信中重新发送“看板”。"),
                            status_code=403)
    tok, new = _pre_token(request)
    return _with_pre(_page("link.html", request, None, csrf=tok, token=token), request, tok, new)


@router.post("/login/{token}")
async def link_login(request: Request, token: str) -> Response:
    rt = _rt(request)
    auth.check_origin(request, rt.settings)
    form = await _form(request)
    auth.check_csrf(request.cookies.get(auth.PRE_COOKIE), form.get("csrf"))
    with rt.db.session() as s:
        row = auth.consume_link(s, token, rt.now())
        if row is None:
            return HTMLResponse(_render("message.html", request, None, title="链接已失效",
                                        message="登录链接已使用或已过期。请在企业微信中重新发送“看板”。"), status_code=403)
        person = s.get(Person, row.person_id) if row.person_id else None
        if person is None or person.role not in auth.ROLES:
            raise HTTPException(403, "您没有查看看板的权限")
        return _start(request, s, person.role, person.id)


@router.post("/logout")
async def logout(request: Request) -> Response:
    rt = _rt(request)
    auth.check_origin(request, rt.settings)
    form = await _form(request)
    with rt.db.session() as s:
        sess = auth.load_session(s, request.cookies.get(auth.COOKIE), rt.now())
        auth.check_csrf(sess.csrf if sess else None, form.get("csrf"))
        auth.end_session(s, sess.token)
    resp = RedirectResponse("/dashboard/login", status_code=303)
    resp.delete_cookie(auth.COOKIE, path="/dashboard")
    return resp


# --- pages ---------------------------------------------------------------------------------------
def _today(rt):
    return rt.now().astimezone(rt.settings.tz).date()


@router.get("")
@_guard
def overview(request: Request, s) -> Response:
    sess = _require(request, s)
    rt = _rt(request)
    reports.ensure_snapshot(s, _today(rt))
    stats = reports.compute_stats(s)
    rep = reports.build_report(s, period="week", now=rt.now(), settings=rt.settings)
    return _page("overview.html", request, sess, stats=stats, rep=rep, digest=reports.render_text(rep, markdown=False))


@router.get("/api/charts.json")
@_guard
def charts(request: Request, s) -> Response:
    _require(request, s)
    rt = _rt(request)
    reports.ensure_snapshot(s, _today(rt))
    snaps = s.execute(select(StatSnapshot).order_by(StatSnapshot.day.desc()).limit(180)).scalars().all()[::-1]
    pulse_rows = s.execute(select(PulseResponse.period, PulseResponse.value, func.count())
                           .group_by(PulseResponse.period, PulseResponse.value)).all()
    by_period: dict[str, dict[int, int]] = defaultdict(dict)
    for period, value, n in pulse_rows:
        by_period[period][value] = n
    periods = sorted(p for p, v in by_period.items() if sum(v.values()) >= reports.MIN_FEEDBACK)[-12:]
    findings = reports.kinds_counter(s)
    return JSONResponse({
        "days": [x.day.isoformat() for x in snaps],
        "groups_live": [x.data.get("groups_live", 0) for x in snaps],
        "groups_protected": [x.data.get("groups_protected", 0) for x in snaps],
        "per_cadre_median": [x.data.get("groups_per_cadre_median", 0) for x in snaps],
        "per_cadre_max": [x.data.get("groups_per_cadre_max", 0) for x in snaps],
        "findings": [{"name": labels.kind(k), "value": v} for k, v in sorted(findings.items())],
        "pulse_periods": periods,
        "pulse_period_names": [labels.period_name(p) for p in periods],
        "pulse": {label: [by_period[p].get(v, 0) for p in periods] for v, label in labels.PULSE_ANSWERS.items()},
    }, headers={"Cache-Control": "no-store"})


@router.get("/findings")
@_guard
def findings(request: Request, s, kind: str | None = None, status: str = "open") -> Response:
    sess = _require(request, s)
    q = select(FindingRecord).order_by(FindingRecord.kind, FindingRecord.score.desc(), FindingRecord.id)
    if kind:
        q = q.where(FindingRecord.kind == kind)
    if status in ("open", "resolved"):
        q = q.where(FindingRecord.status == status)
    rows = s.execute(q.limit(500)).scalars().all()
    names = dict(s.execute(select(Group.id, Group.name)).all())
    return _page("findings.html", request, sess, rows=rows, names=names, kind=kind, status=status,
                 counts=reports.kinds_counter(s))


@router.get("/groups")
@_guard
def ledger(request: Request, s, unit: str = "", status: str = "", category: str = "", q: str = "",
           msg: str = "") -> Response:
    sess = _require(request, s)
    stmt = select(Group).order_by(Group.unit, Group.name, Group.id)
    if unit:
        stmt = stmt.where(Group.unit == unit)
    if status:
        stmt = stmt.where(Group.status == status)
    if category:
        stmt = stmt.where(Group.category == category)
    if q:
        like = f"%{q.strip()}%"
        stmt = stmt.where(or_(Group.name.like(like), Group.purpose.like(like), Group.id.like(like)))
    total = s.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = s.execute(stmt.limit(500)).scalars().all()
    units = [u for u in s.execute(select(Group.unit).distinct().order_by(Group.unit)).scalars() if u]
    cats = [c for c in s.execute(select(Group.category).distinct().order_by(Group.category)).scalars() if c]
    owners = dict(s.execute(select(Person.id, Person.name)).all())
    return _page("groups.html", request, sess, rows=rows, total=total, units=units, cats=cats, owners=owners,
                 f={"unit": unit, "status": status, "category": category, "q": q}, msg=msg)


@router.get("/units")
@_guard
def units(request: Request, s) -> Response:
    sess = _require(request, s)
    return _page("units.html", request, sess, rows=reports.unit_burden(s))


@router.get("/audit")
@_guard
def audit_trail(request: Request, s, before: int | None = None) -> Response:
    sess = _require(request, s)
    q = select(AuditRecord).order_by(AuditRecord.id.desc()).limit(200)
    if before:
        q = q.where(AuditRecord.id < before)
    rows = s.execute(q).scalars().all()
    names = dict(s.execute(select(Group.id, Group.name)).all())
    people = dict(s.execute(select(Person.id, Person.name)).all())
    result = verify(s)
    return _page("audit.html", request, sess, rows=rows, names=names, people=people, verify=result)


@router.get("/feedback")
@_guard
def feedback(request: Request, s) -> Response:
    sess = _require(request, s)
    rows = s.execute(select(PulseResponse.unit, PulseResponse.value, func.count())
                     .group_by(PulseResponse.unit, PulseResponse.value)).all()
    per_unit: dict[str, dict[int, int]] = defaultdict(dict)
    for unit, value, n in rows:
        per_unit[unit or "未填单位"][value] = n
    shown, hidden = [], 0
    for unit, vals in sorted(per_unit.items()):
        total = sum(vals.values())
        if total >= reports.MIN_FEEDBACK:
            shown.append({"unit": unit, "total": total, **{k: vals.get(k, 0) for k in (1, 2, 3)},
                          "heavy": round(100 * vals.get(3, 0) / total)})
        else:
            hidden += 1
    shown.sort(key=lambda r: -r["heavy"])
    from storage.feedback import FEW_VOTES, shown_votes

    votes = [(name, unit, FEW_VOTES if shown_votes(n) is None else n) for name, unit, n in s.execute(
        select(Group.name, Group.unit, func.count(UselessVote.id)).join(Group, Group.id == UselessVote.group_id)
        .group_by(Group.id, Group.name, Group.unit).order_by(func.count(UselessVote.id).desc()).limit(50))]
    reps = s.execute(select(FormalismReport).order_by(FormalismReport.day.desc(), FormalismReport.id.desc())
                     .limit(100)).scalars().all()
    return _page("feedback.html", request, sess, units=shown, hidden=hidden, votes=votes, reports=reps,
                 min=reports.MIN_FEEDBACK)


@router.get("/downloads")
@_guard
def downloads(request: Request, s) -> Response:
    sess = _require(request, s)
    return _page("downloads.html", request, sess)


@router.get("/download/report.{fmt}")
@_guard
def download(request: Request, s, fmt: str, period: str = "week") -> Response:
    _require(request, s)
    if fmt not in ("xlsx", "json") or period not in ("week", "month"):
        raise HTTPException(404, "没有这种格式")
    rt = _rt(request)
    rep = reports.build_report(s, period=period, now=rt.now(), settings=rt.settings)
    name = f"qunzhi-report-{rep.period_key}.{fmt}"
    if fmt == "json":
        body = json.dumps(rep.to_dict(), ensure_ascii=False, indent=2, default=str).encode()
        media = "application/json"
    else:
        buf = io.BytesIO()
        reports.write_xlsx(s, rep, buf, rt.settings)
        body, media = buf.getvalue(), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --- administrator actions -----------------------------------------------------------------------
@router.post("/actions/{action}")
async def act(request: Request, action: str) -> Response:
    rt = _rt(request)
    auth.check_origin(request, rt.settings)
    form = await _form(request)
    # the database work is blocking: keep it off the event loop
    return await run_in_threadpool(_act, request, action, form)


def _act(request: Request, action: str, form: dict) -> Response:
    from urllib.parse import urlencode

    rt = _rt(request)
    group_id = form.get("group_id", "")
    with rt.db.session() as s:
        sess = auth.load_session(s, request.cookies.get(auth.COOKIE), rt.now())
        if sess is None:
            s.commit()  # a session that load_session ended stays ended
            raise HTTPException(403, "登录已过期，请重新登录")
        auth.check_csrf(sess.csrf, form.get("csrf"))
        if not sess.is_admin:
            raise HTTPException(403, "只有管理员可以执行这个操作")
        group = s.get(Group, group_id)
        if group is None:
            raise HTTPException(404, "没有找到这个群")
        actor = sess.person_id or "admin:dashboard"
        try:
            if action == "protect":
                msg = actions.protect(s, group, actor=actor, now=rt.now(), settings=rt.settings)
            elif action == "restore":
                msg = actions.restore(s, group, actor=actor, now=rt.now(), settings=rt.settings)
            elif action == "merge":
                target = s.get(Group, form.get("target_id", "").strip())
                if target is None:
                    raise actions.ActionError("请填写要合并到的群ID。")
                msg = actions.merge(s, group, target, actor=actor, now=rt.now(), settings=rt.settings)
            else:
                raise HTTPException(404, "没有这个操作")
        except (actions.ActionError, ValueError) as e:
            s.rollback()  # a refusal changes nothing
            msg = str(e)
    return RedirectResponse("/dashboard/groups?" + urlencode({"q": group_id, "msg": msg}), status_code=303)


def idle_limit() -> timedelta:
    return timedelta(minutes=auth.IDLE_MINUTES)
