"""Admin-token guesses: back-off and lockout per client address, kept in the database (shared by
every instance), audited; the client address comes from a trusted proxy's X-Forwarded-For hop only."""
from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from bot.app import create_app
from bot.runtime import Runtime
from storage import throttle
from storage.models import AuditRecord, LoginThrottle
from tests.conftest import ADMIN_TOKEN

ORIGIN = "http://127.0.0.1:8000"


def _app(runtime, **settings):
    if settings:
        runtime = Runtime(runtime.settings.model_copy(update=settings), db=runtime.db, clock=runtime.clock)
    return create_app(runtime=runtime, start_scheduler=False)


@pytest.fixture
def web(runtime):
    with TestClient(_app(runtime), base_url=ORIGIN) as c:
        yield c


def _try(c, token: str, headers: dict | None = None):
    page = c.get("/dashboard/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return c.post("/dashboard/login", data={"csrf": csrf, "token": token}, headers={"Origin": ORIGIN, **(headers or {})})


def _logged_in(c) -> bool:
    return c.get("/dashboard/units", follow_redirects=False).status_code == 200


def test_many_wrong_tokens_then_the_right_one_is_refused(web, runtime, clock):
    codes = [_try(web, f"wrong-{i}").status_code for i in range(300)]
    assert codes[:throttle.FREE_FAILURES - 1] == [403] * (throttle.FREE_FAILURES - 1)
    assert set(codes[throttle.FREE_FAILURES - 1:]) == {429}
    r = _try(web, ADMIN_TOKEN)
    assert r.status_code == 429 and "尝试次数过多，请1分钟后再试" in r.text
    assert r.headers["retry-after"] and not _logged_in(web)
    with runtime.db.session() as s:
        lock = s.get(LoginThrottle, "testclient")
        assert lock.failures == throttle.FREE_FAILURES and lock.locked_until > clock()
        audits = s.query(AuditRecord).filter_by(action="login_lockout").all()
        assert len(audits) == 1 and audits[0].data["client"] == "testclient"
        assert "锁定" in audits[0].reason
    clock.advance(seconds=61)
    assert _try(web, ADMIN_TOKEN).status_code == 200 and _logged_in(web)
    with runtime.db.session() as s:
        assert s.get(LoginThrottle, "testclient") is None  # success forgets the failures


def test_back_off_doubles_and_is_audited_each_time(web, runtime, clock):
    for i in range(throttle.FREE_FAILURES):
        _try(web, f"wrong-{i}")
    clock.advance(seconds=61)
    r = _try(web, "wrong-again")
    assert r.status_code == 429 and "请2分钟后再试" in r.text
    clock.advance(seconds=61)
    assert "请1分钟后再试" in _try(web, ADMIN_TOKEN).text  # still locked: the right token does not count
    clock.advance(seconds=60)
    assert "请4分钟后再试" in _try(web, "wrong-third").text
    with runtime.db.session() as s:
        assert s.query(AuditRecord).filter_by(action="login_lockout").count() == 3


def test_lockout_is_shared_by_instances_and_by_the_api(web, runtime):
    for i in range(throttle.FREE_FAILURES):
        _try(web, f"wrong-{i}")
    other = Runtime(runtime.settings, db=runtime.db, clock=runtime.clock)  # a second instance, same database
    with TestClient(_app(other), base_url=ORIGIN) as c2:
        assert _try(c2, ADMIN_TOKEN).status_code == 429
        r = c2.get("/api/groups", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 429 and "尝试次数过多" in r.json()["detail"] and r.headers["retry-after"]


def test_api_bearer_guesses_lock_out_too(runtime, clock):
    with TestClient(_app(runtime), client=("198.51.100.7", 5000)) as c:
        codes = [c.get("/api/groups", headers={"Authorization": f"Bearer wrong-{i}"}).status_code for i in range(20)]
        assert codes[:throttle.FREE_FAILURES - 1] == [401] * (throttle.FREE_FAILURES - 1)
        assert set(codes[throttle.FREE_FAILURES - 1:]) == {429}
        assert c.get("/api/groups", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 429
        assert c.get("/api/groups").status_code == 429
    with TestClient(_app(runtime), client=("198.51.100.8", 5000)) as other:  # another address is not locked
        assert other.get("/api/groups", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
    clock.advance(minutes=2)
    with TestClient(_app(runtime), client=("198.51.100.7", 5000)) as c:
        assert c.get("/api/groups", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200


def test_forwarded_for_is_ignored_from_untrusted_peers(runtime):
    with TestClient(_app(runtime), base_url=ORIGIN, client=("203.0.113.9", 5000)) as c:
        for i in range(throttle.FREE_FAILURES):  # a fresh spoofed X-Forwarded-For on every guess
            _try(c, f"wrong-{i}", {"X-Forwarded-For": f"192.0.2.{i}"})
        assert _try(c, ADMIN_TOKEN, {"X-Forwarded-For": "192.0.2.200"}).status_code == 429
    with runtime.db.session() as s:
        assert [r.client for r in s.query(LoginThrottle)] == ["203.0.113.9"]


def test_forwarded_for_hop_from_a_trusted_proxy(runtime):
    app = _app(runtime, trusted_proxies=("10.0.0.0/8",))
    with TestClient(app, base_url=ORIGIN, client=("10.0.0.1", 5000)) as proxy:
        for i in range(throttle.FREE_FAILURES):  # what the client wrote (left) is not trusted: the proxy's hop is
            _try(proxy, f"wrong-{i}", {"X-Forwarded-For": f"192.0.2.{i}, 10.1.2.3, 198.51.100.20"})
        assert _try(proxy, ADMIN_TOKEN, {"X-Forwarded-For": "198.51.100.20"}).status_code == 429
        assert _try(proxy, ADMIN_TOKEN, {"X-Forwarded-For": "198.51.100.21"}).status_code == 200
    with runtime.db.session() as s:
        assert [r.client for r in s.query(LoginThrottle)] == ["198.51.100.20"]


def test_trusted_proxies_setting_is_validated():
    from pydantic import ValidationError

    from tests.conftest import make_settings

    s = make_settings(trusted_proxies="10.0.0.1, 192.168.0.0/16，::1")
    assert s.trusted_proxies == ("10.0.0.1", "192.168.0.0/16", "::1")
    with pytest.raises(ValidationError) as e:
        make_settings(trusted_proxies="10.0.0.1,proxy.example")
    assert "QUNZHI_TRUSTED_PROXIES" in str(e.value) and "proxy.example" in str(e.value)


def test_concurrent_guesses_are_counted_one_by_one(db, clock):
    """Many guesses at once from one address: only FREE_FAILURES of them are ever compared."""
    compared = []
    lock = threading.Lock()

    def check():
        with lock:
            compared.append(1)
        return False

    def guess():
        with db.session() as s:
            throttle.attempt(s, "192.0.2.50", now=clock(), check=check, via="api")

    threads = [threading.Thread(target=guess) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(compared) == throttle.FREE_FAILURES
    with db.session() as s:
        res = throttle.attempt(s, "192.0.2.50", now=clock(), check=lambda: True, via="api")
        assert not res.ok and res.retry_after == timedelta(minutes=1)
        assert s.query(AuditRecord).filter_by(action="login_lockout").count() == 1
