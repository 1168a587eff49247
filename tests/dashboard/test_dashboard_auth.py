"""Dashboard access: admin login, one-time links from 看板, expiry, CSRF and origin checks, headers."""
from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from bot.app import create_app
from governance.events import Event
from storage.models import AuditRecord, Group, LoginToken
from tests.conftest import ADMIN_TOKEN

ORIGIN = "http://127.0.0.1:8000"


@pytest.fixture
def web(runtime, known, clock):
    from tests.dashboard.conftest import NOW

    clock.set(NOW)
    with TestClient(create_app(runtime=runtime, start_scheduler=False), base_url=ORIGIN) as c:
        yield c


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def login(c) -> str:
    page = c.get("/dashboard/login")
    r = c.post("/dashboard/login", data={"csrf": _csrf(page.text), "token": ADMIN_TOKEN}, headers={"Origin": ORIGIN})
    assert r.status_code == 200 and r.url.path == "/dashboard"
    return _csrf(r.text)


def test_pages_need_login_and_send_security_headers(web):
    r = web.get("/dashboard/groups", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"
    page = web.get("/dashboard/login")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_wrong_token_and_login_csrf(web):
    page = web.get("/dashboard/login")
    assert web.post("/dashboard/login", data={"csrf": _csrf(page.text), "token": "nope"},
                    headers={"Origin": ORIGIN}).status_code == 403
    assert web.post("/dashboard/login", data={"csrf": "forged", "token": ADMIN_TOKEN},
                    headers={"Origin": ORIGIN}).status_code == 403


def test_pages_after_login(web):
    login(web)
    for path, needle in [("/dashboard", "总览"), ("/dashboard/findings", "45天没有工作消息"),
                         ("/dashboard/groups?unit=容美镇", "防汛抗旱群"), ("/dashboard/units", "城关镇"),
                         ("/dashboard/audit", "审计链完整"), ("/dashboard/feedback", "城关镇"),
                         ("/dashboard/downloads", "Excel")]:
        r = web.get(path)
        assert r.status_code == 200 and needle in r.text, path
    ledger = web.get("/dashboard/groups?unit=容美镇&q=森林").text
    assert "森林防火群" in ledger and "防汛抗旱群" not in ledger
    assert "http://" not in web.get("/dashboard").text.replace(ORIGIN, "")  # nothing external
    assert web.get("/dashboard/download/report.xlsx").content[:2] == b"PK"
    assert web.get("/dashboard/download/report.json").json()["groups_live"] == 4


def test_csrf_and_origin_on_actions(web, runtime):
    csrf = login(web)
    data = {"group_id": "g4", "csrf": csrf}
    assert web.post("/dashboard/actions/protect", data={"group_id": "g4"}, headers={"Origin": ORIGIN}).status_code == 403
    assert web.post("/dashboard/actions/protect", data={**data, "csrf": "wrong"},
                    headers={"Origin": ORIGIN}).status_code == 403
    assert web.post("/dashboard/actions/protect", data=data, headers={"Origin": "https://evil.example"}).status_code == 403
    assert web.post("/dashboard/actions/protect", data=data,
                    headers={"Origin": ORIGIN, "Sec-Fetch-Site": "cross-site"}).status_code == 403
    with runtime.db.session() as s:
        assert s.get(Group, "g4").protected is False
    r = web.post("/dashboard/actions/protect", data=data, headers={"Origin": ORIGIN})
    assert r.status_code == 200 and "受保护群" in r.text
    with runtime.db.session() as s:
        assert s.get(Group, "g4").protected is True
        last = s.query(AuditRecord).order_by(AuditRecord.id.desc()).first()
        assert (last.action, last.group_id, last.actor) == ("protect", "g4", "admin:dashboard")


def test_session_expires_when_idle_and_after_hours(web, clock):
    login(web)
    clock.advance(minutes=29)
    assert web.get("/dashboard/units").status_code == 200
    clock.advance(minutes=31)
    assert web.get("/dashboard/units", follow_redirects=False).status_code == 303
    login(web)
    for _ in range(17):  # active every 29 minutes: still ends after 8 hours
        clock.advance(minutes=29)
        web.get("/dashboard/units")
    assert web.get("/dashboard/units", follow_redirects=False).status_code == 303


def _say(runtime, who: str, text: str) -> str:
    ev = Event(platform="local", kind="message", sender_id=who, at=runtime.now(), text=text, msg_id=uuid.uuid4().hex)
    return runtime.process(ev)[0].text


def test_one_time_link_from_chat(web, runtime, clock):
    assert "只向纪委监委和管理员开放" in _say(runtime, "a", "看板")
    reply = _say(runtime, "d", "看板")
    path = re.search(r"/dashboard/login/\S+", reply).group(0)
    assert reply.startswith("看板登录链接") and runtime.settings.public_base_url in reply
    with runtime.db.session() as s:
        token = path.rsplit("/", 1)[1]
        assert all(row.token_hash != token for row in s.query(LoginToken))  # only hashes stored
    confirm = web.get(path)  # a link preview does not use it up
    assert confirm.status_code == 200
    r = web.post(path, data={"csrf": _csrf(confirm.text)}, headers={"Origin": ORIGIN})
    assert r.status_code == 200 and "纪委监委" in r.text
    # a commission member may read but not act
    assert web.post("/dashboard/actions/protect", data={"group_id": "g4", "csrf": _csrf(r.text)},
                    headers={"Origin": ORIGIN}).status_code == 403
    assert web.get(path).status_code == 403  # single use
    reply2 = _say(runtime, "d", "看板")
    path2 = re.search(r"/dashboard/login/\S+", reply2).group(0)
    clock.advance(minutes=16)
    assert web.get(path2).status_code == 403  # expired after 15 minutes


def test_local_page_only_in_local_mode(web):
    assert web.get("/local").status_code == 404


def _link_login(web, runtime, who: str):
    path = re.search(r"/dashboard/login/\S+", _say(runtime, who, "看板")).group(0)
    r = web.post(path, data={"csrf": _csrf(web.get(path).text)}, headers={"Origin": ORIGIN})
    assert r.status_code == 200 and r.url.path == "/dashboard"
    return _csrf(r.text)


def test_demoted_commission_member_loses_access_at_once(web, runtime):
    from storage.models import Person

    _link_login(web, runtime, "d")
    assert web.get("/dashboard/units").status_code == 200
    with runtime.db.session() as s:
        s.get(Person, "d").role = "cadre"
    r = web.get("/dashboard/units", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"
    with runtime.db.session() as s:
        s.get(Person, "d").role = "commission"  # promoted again: the old session stays ended
    assert web.get("/dashboard/units", follow_redirects=False).status_code == 303


def test_demoted_admin_cannot_act_any_more(web, runtime):
    from storage.models import Person

    with runtime.db.session() as s:
        s.get(Person, "d").role = "admin"
    csrf = _link_login(web, runtime, "d")
    with runtime.db.session() as s:
        s.get(Person, "d").role = "commission"
    r = web.post("/dashboard/actions/protect", data={"group_id": "g4", "csrf": csrf}, headers={"Origin": ORIGIN})
    assert r.status_code == 403
    with runtime.db.session() as s:
        assert s.get(Group, "g4").protected is False
    assert web.get("/dashboard/units").status_code == 200  # still a commission member: may read


def test_admin_token_session_survives_role_checks(web):
    login(web)
    assert web.get("/dashboard/units").status_code == 200


def test_logout_ends_the_session_only_with_its_csrf_token(web, runtime, clock):
    csrf = login(web)
    assert web.post("/dashboard/logout", data={"csrf": "wrong"}, headers={"Origin": ORIGIN}).status_code == 403
    assert web.post("/dashboard/logout", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}).status_code == 403
    assert web.get("/dashboard/units", follow_redirects=False).status_code == 200  # still logged in
    r = web.post("/dashboard/logout", data={"csrf": csrf}, headers={"Origin": ORIGIN}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"
    assert 'qz_session=""' in r.headers["set-cookie"] and "path=/dashboard" in r.headers["set-cookie"].lower()
    with runtime.db.session() as s:
        assert s.query(LoginToken).filter_by(kind="session").count() == 0
    csrf = login(web)
    clock.advance(minutes=31)  # an idle session cannot log out either: it has ended already
    assert web.post("/dashboard/logout", data={"csrf": csrf}, headers={"Origin": ORIGIN}).status_code == 403
