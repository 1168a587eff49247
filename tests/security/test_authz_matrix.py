"""Authorization matrix: every role against every chat command and HTTP endpoint that changes or
reveals something. Built from tables: add a row to COMMANDS / HTTP (and a set of allowed roles)
when a command or endpoint lands.

Oracle for chat commands: a command "succeeded" when it changed the database (an audit record,
a changed group row, a login token), so a polite refusal and a crash-free no-op both count as
"denied". Each cell starts from a fresh database state.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

import pytest
from sqlalchemy import func, select

from handlers.context import Services
from platforms.capabilities import table
from handlers.dispatch import handle_event
from governance.events import Event
from storage.models import AuditRecord as AuditLog, Group, LoginToken, Membership, Person
from tests.conftest import ADMIN_TOKEN

ROLES = ("cadre", "owner", "unit_admin_same", "unit_admin_other", "commission", "admin")
PERSONS = {  # person id: (role, unit)
    "cadre": ("cadre", "甲镇"), "owner": ("cadre", "甲镇"), "unit_admin_same": ("unit_admin", "甲镇"),
    "unit_admin_other": ("unit_admin", "乙镇"), "commission": ("commission", "县纪委"), "admin": ("admin", None),
}
CHANGERS = {"owner", "unit_admin_same", "admin"}     # ctx.may_change
ADMINISTRATORS = {"unit_admin_same", "admin"}        # ctx.may_administer
VIEWERS = {"commission", "admin"}                    # dashboard


@dataclass(frozen=True)
class Cell:
    text: str
    allowed: set[str]
    setup: Callable | None = None  # (session, group, now) -> None


def _warned(s, g, now):
    g.status, g.warned_at, g.warning_sent_at = "warned", now - timedelta(days=1), now - timedelta(days=1)


def _dissolved(s, g, now):
    g.status, g.dissolved_at, g.dissolve_method = "dissolved", now - timedelta(days=1), "manual"
    g.dissolve_state = {"members": ["owner", "cadre"], "name": g.name}


COMMANDS = {
    "续期": Cell("续期 测试专班群 30天", CHANGERS),
    "完成": Cell("完成 测试专班群", CHANGERS),
    "保留": Cell("保留 测试专班群 还要用于年底检查", CHANGERS, _warned),
    "恢复": Cell("恢复 测试专班群", CHANGERS, _dissolved),
    "合并": Cell("合并 测试专班群 到 目标群", ADMINISTRATORS),
    "保护": Cell("保护 测试专班群", ADMINISTRATORS),
    "取消保护": Cell("取消保护 测试专班群", ADMINISTRATORS,
                     lambda s, g, now: setattr(g, "protected", True)),
    "看板": Cell("看板", VIEWERS),
    # 报备 of a group already registered to someone else: nobody takes it over by chat.
    "报备他人的群": Cell("报备 测试专班群 用途:抢过来 单位:乙镇 到期:30天", set()),
}


def _seed(db, now, setup):
    with db.session() as s:
        for pid, (role, unit) in PERSONS.items():
            s.add(Person(id=pid, name=pid, role=role, unit=unit, created_at=now))
        for gid, name in (("g1", "测试专班群"), ("g2", "目标群")):
            s.add(Group(id=gid, platform="wecom", name=name, owner_id="owner", unit="甲镇", category="临时群",
                        purpose="防汛", temporary=True, protected=False, created_at=now - timedelta(days=60),
                        first_seen_at=now - timedelta(days=60), registered_at=now - timedelta(days=60),
                        registered_by="owner", source="ledger", status="active", member_count=2,
                        message_count=0, ritual_count=0, keep_count=0, expires_at=(now + timedelta(days=10)).date(),
                        updated_at=now - timedelta(days=60)))
        s.flush()
        for gid in ("g1", "g2"):
            for pid in ("owner", "cadre"):
                s.add(Membership(group_id=gid, person_id=pid, joined_at=now - timedelta(days=60)))
        if setup:
            setup(s, s.get(Group, "g1"), now)


def _snapshot(db):
    with db.session() as s:
        groups = [tuple(getattr(g, c.key) for c in Group.__table__.columns if c.key != "updated_at")
                  for g in s.execute(select(Group).order_by(Group.id)).scalars()]
        return (s.execute(select(func.count()).select_from(AuditLog)).scalar_one(),
                s.execute(select(func.count()).select_from(LoginToken)).scalar_one(), groups)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", list(COMMANDS))
def test_chat_command_matrix(db, settings, clock, name, role):
    cell = COMMANDS[name]
    now = clock()
    _seed(db, now, cell.setup)
    before = _snapshot(db)
    services = Services(settings=settings.model_copy(update={"database_url": db.url}), capabilities=table(settings),
                        clock=clock)
    event = Event(platform="wecom", kind="message", sender_id=role, at=now, text=cell.text, msg_id=f"{name}-{role}")
    with db.session() as s:
        replies = handle_event(s, event, services)
    assert replies, "every command answers something"
    changed = _snapshot(db) != before
    assert changed == (role in cell.allowed), (name, role, [r.text for r in replies])


# --- HTTP -------------------------------------------------------------------------------------------
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HTTP = [  # (method, path, headers, allowed?)
    ("GET", "/api/groups", {}, False),
    ("GET", "/api/groups", {"Authorization": "Bearer wrong-token"}, False),
    ("GET", "/api/groups", {"Authorization": ADMIN_TOKEN}, False),  # no "Bearer " prefix
    ("GET", "/api/groups", ADMIN, True),
    ("GET", "/dashboard", {}, False),
    ("GET", "/dashboard/findings", {}, False),
    ("GET", "/dashboard/groups", {}, False),
    ("GET", "/dashboard/units", {}, False),
    ("GET", "/dashboard/audit", {}, False),
    ("GET", "/dashboard/feedback", {}, False),
    ("GET", "/dashboard/downloads", {}, False),
    ("GET", "/dashboard/download/report.xlsx", {}, False),
    ("GET", "/dashboard/api/charts.json", {}, False),
    ("GET", "/dashboard", ADMIN, False),  # the dashboard uses its own session login, not the API token
    ("POST", "/dashboard/actions/protect", {}, False),
    ("POST", "/dashboard/actions/restore", {}, False),
    ("POST", "/dashboard/actions/merge", {}, False),
    ("POST", "/dashboard/login/not-a-real-token", {}, False),
]


@pytest.mark.parametrize("method,path,headers,allowed", HTTP, ids=[f"{m} {p} {'+'.join(h) or 'anon'}"
                                                                   for m, p, h, _ in HTTP])
def test_http_matrix(client, db, clock, method, path, headers, allowed):
    _seed(db, clock(), None)
    before = _snapshot(db)
    r = client.request(method, path, headers=headers, data={"group_id": "g1", "target": "g2"},
                       follow_redirects=False)
    if allowed:
        assert r.status_code == 200
        assert "测试专班群" in r.text
    else:
        assert r.status_code in (302, 303, 307, 400, 401, 403, 404, 405, 422), (path, r.status_code)
        assert "测试专班群" not in r.text and "防汛" not in r.text
    assert _snapshot(db)[0:2] == before[0:2]


# --- logged-in dashboard sessions ---------------------------------------------------------------------
ORIGIN = "http://testserver"
PAGES = ["/dashboard", "/dashboard/findings", "/dashboard/groups", "/dashboard/units", "/dashboard/audit",
         "/dashboard/feedback", "/dashboard/downloads", "/dashboard/api/charts.json"]
ACTIONS = {  # path: (form, setup)
    "/dashboard/actions/protect": ({"group_id": "g1"}, None),
    "/dashboard/actions/restore": ({"group_id": "g1"}, _dissolved),
    "/dashboard/actions/merge": ({"group_id": "g1", "target_id": "g2"}, None),
}
SESSIONS = {"admin_token": True, "admin_link": True, "commission_link": False}  # session: may act?


def _csrf(html: str) -> str:
    import re

    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _login(client, runtime, kind: str) -> str:
    """Log in as the session kind; returns the session's CSRF token."""
    import re

    if kind == "admin_token":
        page = client.get("/dashboard/login")
        r = client.post("/dashboard/login", data={"csrf": _csrf(page.text), "token": ADMIN_TOKEN},
                        headers={"Origin": ORIGIN})
    else:
        who = "admin" if kind == "admin_link" else "commission"
        ev = Event(platform="wecom", kind="message", sender_id=who, at=runtime.now(), text="看板", msg_id=f"link-{kind}")
        path = re.search(r"/dashboard/login/\S+", runtime.process(ev)[0].text).group(0)
        r = client.post(path, data={"csrf": _csrf(client.get(path).text)}, headers={"Origin": ORIGIN})
    assert r.status_code == 200 and r.url.path == "/dashboard", (kind, r.status_code)
    return _csrf(r.text)


@pytest.mark.parametrize("kind", list(SESSIONS))
def test_dashboard_session_may_read_every_page(client, runtime, db, clock, kind):
    _seed(db, clock(), None)
    _login(client, runtime, kind)
    for page in PAGES:
        r = client.get(page)
        assert r.status_code == 200, (kind, page, r.status_code)
    assert "测试专班群" in client.get("/dashboard/groups").text


@pytest.mark.parametrize("kind", list(SESSIONS))
@pytest.mark.parametrize("path", list(ACTIONS))
def test_dashboard_session_actions(client, runtime, db, clock, kind, path):
    form, setup = ACTIONS[path]
    _seed(db, clock(), setup)
    csrf = _login(client, runtime, kind)
    before = _snapshot(db)
    r = client.post(path, data={**form, "csrf": csrf}, headers={"Origin": ORIGIN}, follow_redirects=False)
    changed = _snapshot(db)[::2] != before[::2]  # audit count and groups (login tokens change on login)
    assert changed == SESSIONS[kind], (kind, path, r.status_code)
    if not SESSIONS[kind]:
        assert r.status_code == 403


def test_dashboard_refused_action_changes_nothing_and_says_why(client, runtime, db, clock):
    _seed(db, clock(), None)
    csrf = _login(client, runtime, "admin_token")
    before = _snapshot(db)
    r = client.post("/dashboard/actions/merge", data={"group_id": "g1", "target_id": "", "csrf": csrf},
                    headers={"Origin": ORIGIN}, follow_redirects=False)
    assert r.status_code == 303 and "msg=" in r.headers["location"]
    assert _snapshot(db)[::2] == before[::2]
    page = client.get(r.headers["location"])
    assert "请选择要合并到的群" in page.text  # merge is by choosing a group now (the merge page)


def test_a_bridge_user_with_an_admins_id_is_not_that_admin(client, db, clock):
    """A WeChat id equal to a WeCom administrator's userid must not carry the admin role."""
    from tests.bot.helpers import bridge_post

    _seed(db, clock(), None)
    before = _snapshot(db)
    event = {"id": "spoof-1", "type": "message", "platform": "wechat", "group_id": None, "sender_id": "admin",
             "text": "保护 测试专班群", "at": clock().isoformat(), "mentioned_bot": True, "member_ids": []}
    r = bridge_post(client, clock, event)
    assert r.status_code == 200 and r.json()["replies"], r.text
    assert _snapshot(db)[::2] == before[::2]
    with db.session() as s:
        assert s.get(Person, "wechat:admin").role == "cadre"
