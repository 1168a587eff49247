"""The dashboard (看板): server-rendered Chinese pages under /dashboard for commissions and admins."""
from __future__ import annotations

import io
import json
import logging
import secrets
from pathlib import Path
from typing import Callable
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape

from bot.dashboard import actions, auth
from platforms.pages import SecureRoute as PageRoute
from platforms.registry import owner_of
from governance import labels
from storage import dashboard as queries
from storage import logins, reports
from storage.audit import verify
from storage.feedback import FEW_VOTES
from storage.lifecycle import findings_computed_at

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
STATIC = HERE / "static"
STATIC_TYPES = {".js": "application/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".txt": "text/plain; charset=utf-8", ".svg": "image/svg+xml"}
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
env.globals["platform_name"] = lambda code: labels.label("platform", code)
env.globals["match_name"] = lambda code: labels.label("match", code)


def activity_name(group) -> str:
    """What the bot sees of a group's traffic; NULL reads as its platform's default, or 未知."""
    if group.activity_source:
        return labels.label("activity_source", group.activity_source)
    owner = owner_of(group.platform)
    if owner is None:
        return "未知"
    return f"{labels.label('activity_source', owner.capabilities.activity)}（平台默认）"


env.globals["activity_name"] = activity_name


class SecureRoute(PageRoute):
    """The security headers (``platforms.pages``); an error is the dashboard's message page."""

    def error_response(self, request: Request, e: HTTPException) -> Response:
        return HTMLResponse(_render("message.html", request, None, title="无法完成", message=e.detail),
                            status_code=e.status_code)


class _LoginRedirect(APIRoute):
    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def redirecting(request: Request) -> Response:
            try:
                return await handler(request)
            except auth.LoginRequired:
                return RedirectResponse(auth.LOGIN_PATH, status_code=303)

        return redirecting


class DashboardRoute(SecureRoute, _LoginRedirect):
    """``SecureRoute`` (headers, Chinese error pages) around every dashboard route, and inside it
    a visitor who has to log in (``auth.LoginRequired``, raised by ``auth.viewer``) is sent to
    the login page."""


router = APIRouter(prefix="/dashboard", route_class=DashboardRoute)


def _rt(request: Request):
    return auth.runtime(request)


def _render(name: str, request: Request, sess: logins.DashSession | None, **ctx) -> str:
    ctx.setdefault("tz", _rt(request).settings.tz)
    return env.get_template(name).render(request=request, sess=sess, path=request.url.path, **ctx)


def _local(at, tz) -> str:
    t = labels.local_dt(at, tz)  # never fails on a stored far date
    return f"{t.year}年{t.month}月{t.day}日 {t:%H:%M}"


def _findings_label(request: Request, s) -> str:
    """“问题清单更新于 …（北京时间）” for the page header, from ``finding_refreshes``."""
    full = findings_computed_at(s).get("full")
    if full is None:
        return "问题清单尚未生成（每小时自动更新）"
    tz = _rt(request).settings.tz
    zone = "北京时间" if getattr(tz, "key", "") in ("Asia/Shanghai", "Asia/Chongqing", "PRC") else str(tz)
    return (f"问题清单更新于 {_local(full, tz)}（{zone}），每小时全面更新；"
            "此后保留、续期、完成、登记等操作涉及的群已即时更新")


def _page(name: str, request: Request, sess, **ctx) -> HTMLResponse:
    return HTMLResponse(_render(name, request, sess, **ctx))


def _view(name: str, request: Request, s, sess: logins.DashSession, **ctx) -> HTMLResponse:
    """A page of a logged-in visitor: its header says when the findings were computed."""
    return _page(name, request, sess, findings_at=_findings_label(request, s), **ctx)


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
    sess = logins.start_session(s, role=role, person_id=person_id, now=rt.now())
    resp = RedirectResponse("/dashboard", status_code=303)
    resp.set_cookie(auth.COOKIE, sess.token, max_age=logins.SESSION_HOURS * 3600, **auth.cookie_kwargs(rt.settings))
    resp.delete_cookie(auth.PRE_COOKIE, path="/dashboard")
    return resp


@router.post("/login")
def login(request: Request, form: auth.PreSessionForm, s: auth.DB) -> Response:
    # The admin token goes through the per-address limiter, whose row lock may wait for another
    # instance: a plain ``def``, so FastAPI runs this in the thread pool, off the event loop.
    tok, new = _pre_token(request)
    try:
        ok = auth.admin_token_attempt(_rt(request), request, form.get("token", ""), via="dashboard")
    except auth.Locked as e:
        return _with_pre(HTMLResponse(_render("login.html", request, None, csrf=tok, error=e.detail),
                                      status_code=429, headers=e.headers), request, tok, new)
    if not ok:
        return _with_pre(HTMLResponse(_render("login.html", request, None, csrf=tok, error="令牌不正确"),
                                      status_code=403), request, tok, new)
    return _start(request, s, "admin", None)


@router.get("/login/{token}")
def link_form(request: Request, token: str, s: auth.DB) -> Response:
    """Show a confirm button: link previews in chat apps must not use up the one-time link."""
    if logins.link_valid(s, token, _rt(request).now()) is None:
        return HTMLResponse(_render("message.html", request, None, title="链接已失效",
                                    message="登录链接已使用或已过期（15分钟内有效）。请在企业微信中重新发送“看板”。"),
                            status_code=403)
    tok, new = _pre_token(request)
    return _with_pre(_page("link.html", request, None, csrf=tok, token=token), request, tok, new)


@router.post("/login/{token}")
def link_login(request: Request, token: str, form: auth.PreSessionForm, s: auth.DB) -> Response:
    try:
        person = logins.redeem_link(s, token, _rt(request).now())
    except logins.NotAViewer:
        raise HTTPException(403, "您没有查看看板的权限") from None  # rolled back: the link stays unused
    if person is None:
        return HTMLResponse(_render("message.html", request, None, title="链接已失效",
                                    message="登录链接已使用或已过期。请在企业微信中重新发送“看板”。"), status_code=403)
    return _start(request, s, person.role, person.id)


@router.post("/logout")
def logout(s: auth.DB, sess: auth.SessionForm) -> Response:
    logins.end_session(s, sess.token)
    resp = RedirectResponse("/dashboard/login", status_code=303)
    resp.delete_cookie(auth.COOKIE, path="/dashboard")
    return resp


# --- pages ---------------------------------------------------------------------------------------
def _today(rt):
    return rt.now().astimezone(rt.settings.tz).date()


@router.get("")
def overview(request: Request, s: auth.DB, sess: auth.Viewer) -> Response:
    rt = _rt(request)
    reports.ensure_snapshot(s, _today(rt))
    stats = reports.compute_stats(s)
    rep = reports.build_report(s, period="week", now=rt.now(), settings=rt.settings)
    return _view("overview.html", request, s, sess, stats=stats, rep=rep,
                 digest=reports.render_text(rep, markdown=False))


@router.get("/api/charts.json")
def charts(request: Request, s: auth.DB, sess: auth.Viewer) -> Response:
    reports.ensure_snapshot(s, _today(_rt(request)))
    snaps = queries.recent_snapshots(s)
    pulse = queries.pulse_by_period(s)
    findings = reports.kinds_counter(s)
    return JSONResponse({
        "days": [x.day.isoformat() for x in snaps],
        "groups_live": [x.data.get("groups_live", 0) for x in snaps],
        "groups_protected": [x.data.get("groups_protected", 0) for x in snaps],
        "per_cadre_median": [x.data.get("groups_per_cadre_median", 0) for x in snaps],
        "per_cadre_max": [x.data.get("groups_per_cadre_max", 0) for x in snaps],
        "findings": [{"name": labels.kind(k), "value": v} for k, v in sorted(findings.items())],
        "pulse_periods": list(pulse),
        "pulse_period_names": [labels.period_name(p) for p in pulse],
        "pulse": {label: [pulse[p].get(v, 0) for p in pulse] for v, label in labels.PULSE_ANSWERS.items()},
    }, headers={"Cache-Control": "no-store"})


@router.get("/findings")
def findings(request: Request, s: auth.DB, sess: auth.Viewer, kind: str | None = None,
             status: str = "open") -> Response:
    return _view("findings.html", request, s, sess, rows=queries.findings(s, kind=kind, status=status),
                 names=queries.group_names(s), kind=kind, status=status, counts=reports.kinds_counter(s))


@router.get("/groups")
def ledger(request: Request, s: auth.DB, sess: auth.Viewer, unit: str = "", status: str = "", category: str = "",
           q: str = "", msg: str = "") -> Response:
    page = queries.ledger(s, unit=unit, status=status, category=category, q=q)
    return _view("groups.html", request, s, sess, rows=page.rows, total=page.total, units=page.units,
                 cats=page.categories, owners=page.owners,
                 f={"unit": unit, "status": status, "category": category, "q": q}, msg=msg)


@router.get("/units")
def units(request: Request, s: auth.DB, sess: auth.Viewer) -> Response:
    return _view("units.html", request, s, sess, rows=reports.unit_burden(s))


def _week_name(w: queries.Week) -> str:
    return "本周（截至今日）" if w.current else f"{w.monday.year}年{w.monday.month}月{w.monday.day}日"


def _trend_page(request: Request, s, sess, unit: str | None) -> Response:
    rt = _rt(request)
    t = queries.trends(s, now=rt.now(), tz=rt.settings.tz, unit=unit)
    names = [_week_name(w) for w in t.weeks]
    short = ["本周" if w.current else f"{w.monday.month}月{w.monday.day}日" for w in t.weeks]
    return _view("trends.html", request, s, sess, t=t, names=names, unit=unit, few=FEW_VOTES,
                 min=reports.MIN_FEEDBACK, chart={**t.to_dict(), "labels": short})


@router.get("/trends")
def trends(request: Request, s: auth.DB, sess: auth.Viewer) -> Response:
    return _trend_page(request, s, sess, None)


@router.get("/unit")
def unit_page(request: Request, s: auth.DB, sess: auth.Viewer, name: str = "") -> Response:
    if name not in queries.unit_names(s):
        raise HTTPException(404, "没有这个单位")
    return _trend_page(request, s, sess, name)


@router.get("/audit")
def audit_trail(request: Request, s: auth.DB, sess: auth.Viewer, before: int | None = None) -> Response:
    return _view("audit.html", request, s, sess, rows=queries.audit_records(s, before=before),
                 names=queries.group_names(s), people=queries.person_names(s), verify=verify(s))


@router.get("/reconcile")
def reconcile_page(request: Request, s: auth.DB, sess: auth.Viewer, msg: str = "") -> Response:
    from storage.reconcile import page

    return _view("reconcile.html", request, s, sess, rep=page(s), msg=msg)


@router.post("/reconcile/{decision}")
def reconcile_decide(request: Request, decision: str, form: auth.PostedForm, s: auth.DB,
                     sess: auth.Admin) -> Response:
    """确认 (the entry is this group: one group for good) or 不是 (none of the candidates)."""
    rt = _rt(request)
    actor = sess.person_id or "admin:dashboard"
    try:
        if decision == "confirm":
            msg = actions.confirm_match(s, form.get("ledger_id", ""), form.get("group_id", ""), actor=actor,
                                        now=rt.now(), settings=rt.settings)
        elif decision == "reject":
            msg = actions.reject_match(s, form.get("ledger_id", ""), form.get("candidates", "").split(","),
                                       actor=actor, now=rt.now())
        else:
            raise HTTPException(404, "没有这个操作")
    except (actions.ActionError, ValueError) as e:
        s.rollback()  # a refusal changes nothing
        msg = str(e)
    return RedirectResponse("/dashboard/reconcile?" + urlencode({"msg": msg}), status_code=303)


@router.get("/feedback")
def feedback(request: Request, s: auth.DB, sess: auth.Viewer) -> Response:
    shown, hidden = queries.pulse_by_unit(s)
    return _view("feedback.html", request, s, sess, units=shown, hidden=hidden, votes=queries.useless_votes(s),
                 reports=queries.formalism_reports(s), min=reports.MIN_FEEDBACK)


@router.get("/downloads")
def downloads(request: Request, s: auth.DB, sess: auth.Viewer) -> Response:
    return _view("downloads.html", request, s, sess)


@router.get("/download/report.{fmt}")
def download(request: Request, s: auth.DB, sess: auth.Viewer, fmt: str, period: str = "week") -> Response:
    if fmt not in ("xlsx", "json", "docx") or period not in ("week", "month"):
        raise HTTPException(404, "没有这种格式")
    rt = _rt(request)
    rep = reports.build_report(s, period=period, now=rt.now(), settings=rt.settings)
    name = f"qunzhi-report-{rep.period_key}.{fmt}"
    if fmt == "json":
        body = json.dumps(rep.to_dict(), ensure_ascii=False, indent=2, default=str).encode()
        media = "application/json"
    elif fmt == "docx":
        from storage.report_docx import write_docx

        buf = io.BytesIO()
        write_docx(s, rep, buf, rt.settings)
        body, media = buf.getvalue(), "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    else:
        buf = io.BytesIO()
        reports.write_xlsx(s, rep, buf, rt.settings)
        body, media = buf.getvalue(), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --- administrator actions -----------------------------------------------------------------------
@router.get("/merge")
def merge_form(request: Request, s: auth.DB, sess: auth.AdminPage, group_id: str = "") -> Response:
    """Merge by choosing the target group (the duplicate finding's partners first)."""
    group = queries.group(s, group_id)
    if group is None:
        raise HTTPException(404, "没有找到这个群")
    problem = queries.merge_source_problem(group)
    choices = [] if problem else queries.merge_choices(s, group)
    return _view("merge.html", request, s, sess, group=group, choices=choices, problem=problem)


@router.post("/actions/{action}")
def act(request: Request, action: str, form: auth.PostedForm, s: auth.DB, sess: auth.Admin) -> Response:
    rt = _rt(request)
    group_id = form.get("group_id", "")
    group = queries.group(s, group_id)
    if group is None:
        raise HTTPException(404, "没有找到这个群")
    actor = sess.person_id or "admin:dashboard"
    try:
        if action == "protect":
            msg = actions.protect(s, group, actor=actor, now=rt.now(), settings=rt.settings)
        elif action == "restore":
            msg = actions.restore(s, group, actor=actor, now=rt.now(), settings=rt.settings)
        elif action == "merge":  # the target chosen on the merge page, checked again here
            target_id = form.get("target_id", "").strip()
            target = queries.group(s, target_id) if target_id else None
            problem = queries.merge_problem(group, target)
            if problem:
                raise actions.ActionError(problem)
            msg = actions.merge(s, group, target, actor=actor, now=rt.now(), settings=rt.settings)
        else:
            raise HTTPException(404, "没有这个操作")
    except (actions.ActionError, ValueError) as e:
        s.rollback()  # a refusal changes nothing
        msg = str(e)
        log.warning("dashboard action %s on group %r refused (target %r): %s", action, group_id,
                    form.get("target_id"), msg)
    return RedirectResponse("/dashboard/groups?" + urlencode({"q": group_id, "msg": msg}), status_code=303)
