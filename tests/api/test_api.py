"""GET /api/groups (Bearer ADMIN_TOKEN) and /healthz."""
from tests.conftest import ADMIN_TOKEN
from tests.factories import Chat


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_groups_requires_admin_token(client):
    assert client.get("/api/groups").status_code == 401
    assert client.get("/api/groups", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/groups", headers={"Authorization": ADMIN_TOKEN}).status_code == 401


def test_groups_lists_the_ledger(client, runtime, clock):
    chat = Chat(runtime, clock)
    chat.say("zhang", "报备 秋粮收购专班 用途:调度 单位:城关镇 类别:临时群 到期:12月31日")
    chat.say("li", "收到", group="g-1", mentioned=False, group_name="防汛群")
    r = client.get("/api/groups", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 2
    by_name = {g["name"]: g for g in body["groups"]}
    reg = by_name["秋粮收购专班"]
    assert (reg["owner"], reg["unit"], reg["category"], reg["protected"], reg["status"], reg["expires_at"],
            reg["registered"]) == ("zhang", "城关镇", "临时群", False, "active", "2026-12-31", True)
    seen = by_name["防汛群"]
    assert seen["member_count"] == 1 and seen["last_activity"] is not None and seen["registered"] is False
    r = client.get("/api/groups", params={"unit": "城关镇"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert [g["name"] for g in r.json()["groups"]] == ["秋粮收购专班"]


def test_framework_errors_read_in_chinese(client):
    """Unknown paths, wrong methods and malformed parameters: no English framework phrase."""
    import re

    for resp in (client.get("/no/such/page"), client.put("/healthz"),
                 client.get("/api/groups", params={"limit": "many"},
                            headers={"Authorization": "Bearer admin-token-for-tests"})):
        assert resp.status_code in (404, 405, 422), resp.status_code
        words = re.findall(r"[A-Za-z]{3,}", resp.text.replace('"detail"', "").replace('"loc"', "")
                           .replace('"msg"', "").replace('"type"', "").replace('"query"', "").replace("limit", ""))  # an option name may stay Latin
        assert not words, (resp.status_code, resp.text)


def test_absurd_paging_is_refused_not_a_crash(client):
    """An offset or limit past what the database can hold is a 422, never a 500."""
    for params in ({"offset": "9223372036854775808"}, {"offset": "99999999999999999999"}):
        r = client.get("/api/groups", params=params, headers={"Authorization": "Bearer admin-token-for-tests"})
        assert r.status_code == 422, (params, r.status_code)
