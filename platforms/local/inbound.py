"""Local mode (no WeCom credentials): a small chat page at /local to try the bot in a browser.

A newcomer picks a cadre from a list and talks to the bot exactly as on WeCom: every message
becomes an ``Event(platform="local")`` and takes the callbacks' path, ``Runtime.process_async``
(the same writer, batches and handlers as production; its deadline is the local platform's).
The page exists only in local mode: development, no WeCom credentials, and the server bound to
a loopback address (``Settings.local_mode_on``); every /local path is 404 otherwise. A few demo
persons (one of them an admin) and groups are seeded on first use, only into a database without
any person or group.
"""
from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from governance import labels
from governance.events import Event
from platforms.base import DeadlineMissed
from platforms.common import inbox as app_inbox
from platforms.pages import SecureRoute, check_origin
from storage import repo
from storage.models import Group, OutboxMessage, Person

router = APIRouter(prefix="/local", route_class=SecureRoute)  # errors answer JSON {"detail": ...}

HERE = Path(__file__).parent
PAGE = (HERE / "page.html").read_text(encoding="utf-8")  # the dashboard's look: /dashboard/static/dashboard.css
SCRIPT = (HERE / "static" / "local.js").read_bytes()

SEED_PERSONS = [  # id, name, unit, role
    ("zhang.zz", "张镇长", "城关镇", "cadre"), ("li.zr", "李主任", "城关镇", "cadre"),
    ("wang.gs", "王干事", "城关镇", "cadre"), ("chen.sj", "陈书记", "容美镇", "unit_admin"),
    ("zhao.jw", "赵纪委", "县纪委监委", "commission"), ("admin", "管理员", "县委办", "admin"),
]
SEED_GROUPS = [  # id, name, unit, category, protected, temporary, owner, members, idle days
    ("local-g1", "城关镇领导班子群", "城关镇", "领导班子群", True, False, "zhang.zz", ["zhang.zz", "li.zr", "wang.gs"], 1),
    ("local-g2", "城关镇机关群", "城关镇", "机关群", True, False, "li.zr", ["zhang.zz", "li.zr", "wang.gs"], 2),
    ("local-g3", "秋粮收购专班", "城关镇", "临时群", False, True, "zhang.zz", ["zhang.zz", "wang.gs"], 5),
    ("local-g4", "防汛抗旱群", "城关镇", None, False, False, "li.zr", ["zhang.zz", "li.zr", "wang.gs"], 60),
    ("local-g5", "森林防火工作群", "容美镇", None, False, False, "chen.sj", ["chen.sj", "zhang.zz", "wang.gs"], 45),
]


def _runtime(request: Request):
    rt = app_inbox(request.app)
    if not getattr(request.app.state, "local_mode", False) or not rt.settings.local_mode:
        raise HTTPException(404, "没有这个页面")
    return rt


def seed_if_empty(rt) -> bool:
    """Create a few demo cadres and groups when the database has nobody yet."""
    now = rt.now()
    try:
        return _seed(rt, now)
    except IntegrityError:  # two first visits at once: the other one seeded
        return False


def _seed(rt, now) -> bool:
    with rt.db.session() as s:
        if (s.execute(select(func.count()).select_from(Person)).scalar_one()
                or s.execute(select(func.count()).select_from(Group)).scalar_one()):
            return False
        for pid, name, unit, role in SEED_PERSONS:
            s.add(Person(id=pid, name=name, unit=unit, role=role, created_at=now))
        s.flush()
        for gid, name, unit, cat, protected, temporary, owner, members, idle in SEED_GROUPS:
            g = repo.ensure_group(s, group_id=gid, platform="local", at=now - timedelta(days=120), name=name,
                                  source="ledger")
            g.unit, g.category, g.protected, g.temporary, g.owner_id = unit, cat, protected, temporary, owner
            g.registered_at = now - timedelta(days=100) if protected or temporary else None
            g.expires_at = (now + timedelta(days=20)).date() if temporary else None
            g.last_work_at = g.last_message_at = now - timedelta(days=idle)
            repo.add_members(s, gid, members, now - timedelta(days=120))
    return True


@router.get("")
def page(request: Request) -> HTMLResponse:
    rt = _runtime(request)
    seed_if_empty(rt)
    return HTMLResponse(PAGE)


@router.get("/static/local.js")
def script(request: Request) -> Response:
    _runtime(request)
    return Response(SCRIPT, media_type="application/javascript; charset=utf-8")


@router.get("/persons")
def persons(request: Request) -> JSONResponse:
    rt = _runtime(request)
    seed_if_empty(rt)
    with rt.db.session() as s:
        rows = s.execute(select(Person).order_by(Person.unit, Person.id)).scalars().all()
        groups = s.execute(select(Group).where(Group.status.in_(("active", "warned"))).order_by(Group.name)).scalars().all()
        return JSONResponse({"persons": [{"id": p.id, "name": p.name or p.id, "unit": p.unit or "", "role": p.role,
                                          "role_name": labels.role(p.role)}
                                         for p in rows],
                             "groups": [{"id": g.id, "name": g.name} for g in groups]})


@router.post("/send")
async def send(request: Request) -> JSONResponse:
    rt = _runtime(request)
    check_origin(request, rt.settings)
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise HTTPException(415, "请用 JSON 发送")
    body = await request.json()
    person_id, text = str(body.get("person_id", "")).strip(), str(body.get("text", "")).strip()
    group_id = (str(body.get("group_id") or "").strip()) or None
    if not person_id or not text or len(text) > 2000:
        raise HTTPException(400, "请选择身份并输入内容")
    with rt.db.session() as s:
        if s.get(Person, person_id) is None:
            raise HTTPException(400, "没有这个人")
        name = s.get(Group, group_id).name if group_id and s.get(Group, group_id) else None
    event = Event(platform="local", kind="message", sender_id=person_id, at=rt.now(), text=text, group_id=group_id,
                  msg_id=uuid.uuid4().hex, mentioned_bot=bool(group_id), group_name=name)
    try:
        replies = await rt.process_async(event, reply_channel="local")
    except DeadlineMissed:  # stored later; its replies are queued and shown under 推送
        raise HTTPException(503, "处理超时，回复稍后经推送送达") from None
    return JSONResponse({"replies": [{"text": r.text, "markdown": r.markdown} for r in replies]})


@router.get("/inbox")
def inbox(request: Request, person_id: str) -> JSONResponse:
    """Messages the bot queued for this person (warnings, digests…), as they would arrive on WeCom."""
    rt = _runtime(request)
    with rt.db.session() as s:
        rows = s.execute(select(OutboxMessage).where(OutboxMessage.recipient == person_id)
                         .order_by(OutboxMessage.id.desc()).limit(20)).scalars().all()
        return JSONResponse({"messages": [{"kind": m.kind, "status": m.status,
                                           "kind_name": labels.label("message", m.kind),
                                           "status_name": labels.label("outbox_status", m.status),
                                           "text": _shown(m.payload)} for m in rows]})


def _shown(payload) -> str:
    """What the person reads of a queued message: its text (a card without one is named)."""
    p = payload if isinstance(payload, dict) else {}
    return str(p["text"]) if p.get("text") else "（卡片消息）"
