"""The bridge endpoint: signed JSON events from a bridge in personal WeChat groups."""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from sqlalchemy import select

from platforms.bridge.inbound import dissolve_instruction, sign
from storage.models import Group, Membership, Message, ProcessedEvent
from tests.bot.helpers import bridge_post, count
from tests.conftest import BRIDGE_SECRET


def _event(id_: str, type_: str = "message", **kw) -> dict:
    e = {"id": id_, "type": type_, "platform": "wechat", "group_id": "wxg-1", "group_name": "城关镇秋粮群",
         "sender_id": "wx-zhang", "member_ids": [], "text": "", "at": "2026-11-23T10:00:00+08:00",
         "mentioned_bot": False}
    e.update(kw)
    return e


def test_signature_construction_is_documented_one():
    body = b'{"id":"1"}'
    expected = hmac.new(BRIDGE_SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(BRIDGE_SECRET, "1700000000", body) == expected


def test_message_is_recorded_and_mention_answered(client, clock, db):
    r = bridge_post(client, clock, _event("e1", text="大家好"))
    assert r.status_code == 200
    assert r.json() == {"ok": True, "replies": []}  # not addressed to the bot
    r = bridge_post(client, clock, _event("e2", text="@群治 帮助", mentioned_bot=True))
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True and len(body["replies"]) == 1 and "报备" in body["replies"][0]["text"]
    with db.session() as s:
        g = s.get(Group, "wechat:wxg-1")  # group ids are scoped by platform, as person ids are
        assert (g.platform, g.name) == ("wechat", "城关镇秋粮群")
        assert s.get(Group, "wxg-1") is None
        assert s.execute(select(Message.dedupe_key).order_by(Message.id)).scalars().all() == [
            "wechat:bridge:e1", "wechat:bridge:e2"]


def test_dedupe_by_id(client, clock, db):
    assert bridge_post(client, clock, _event("same", text="一")).status_code == 200
    clock.advance(seconds=5)
    r = bridge_post(client, clock, _event("same", text="一"))
    assert r.json() == {"ok": True, "replies": []}
    assert count(db, Message) == 1
    assert count(db, ProcessedEvent) == 1


def test_member_events_rename_and_dissolve_confirmed(client, clock, db):
    ok = lambda r: r.status_code == 200 and r.json()["ok"] is True  # noqa: E731
    assert ok(bridge_post(client, clock, _event("c1", "group_created", member_ids=["a", "b", "c"])))
    assert ok(bridge_post(client, clock, _event("j1", "member_joined", member_ids=["d"])))
    assert ok(bridge_post(client, clock, _event("l1", "member_left", member_ids=["a"])))
    assert ok(bridge_post(client, clock, _event("r1", "group_renamed", group_name="秋粮收购专班")))
    with db.session() as s:
        members = s.execute(select(Membership.person_id).where(Membership.group_id == "wechat:wxg-1")
                            .order_by(Membership.person_id)).scalars().all()
        assert members == ["wechat:b", "wechat:c", "wechat:d"]  # bridge users live in their own namespace
        g = s.get(Group, "wechat:wxg-1")
        assert (g.name, g.member_count) == ("秋粮收购专班", 3)
    r = bridge_post(client, clock, _event("dc1", "dissolve_confirmed", instruction_id="ins-1"))
    assert ok(r)
    assert count(db, ProcessedEvent) == 5


@pytest.mark.parametrize("secret,delta,status", [
    (BRIDGE_SECRET, 0, 200), ("wrong-secret", 0, 403), (BRIDGE_SECRET, -301, 403), (BRIDGE_SECRET, 301, 403),
])
def test_signature_and_window(client, clock, db, secret, delta, status):
    ts = int(clock().timestamp()) + delta
    r = bridge_post(client, clock, _event("s1", text="一"), secret=secret, timestamp=ts)
    assert r.status_code == status
    assert count(db, ProcessedEvent) == (1 if status == 200 else 0)


def test_tampered_body_and_missing_headers_are_403(client, clock, db):
    body = json.dumps(_event("t1", text="一"), ensure_ascii=False).encode()
    ts = str(int(clock().timestamp()))
    headers = {"X-Qunzhi-Timestamp": ts, "X-Qunzhi-Signature": sign(BRIDGE_SECRET, ts, body)}
    tampered = body.replace("一".encode(), "二".encode())
    assert tampered != body
    assert client.post("/bridge/events", content=tampered,
                       headers=headers).status_code == 403
    assert client.post("/bridge/events", content=body).status_code == 403
    assert count(db, ProcessedEvent) == 0


@pytest.mark.parametrize("event,needle", [
    (_event("b1", "exploded"), "事件类型"),
    (_event("b2", at="2026-11-23T10:00:00"), "带时区"),
    ({k: v for k, v in _event("b3").items() if k != "sender_id"}, "缺少发送人"),
    (_event("b4", "member_joined", group_id=None), "group_id"),
    (_event("b5", surprise=1), "不认识的字段"),
])
def test_invalid_events_are_400_in_chinese(client, clock, db, event, needle):
    r = bridge_post(client, clock, event)
    assert r.status_code == 400
    assert r.json()["ok"] is False and needle in r.json()["error"]
    assert count(db, ProcessedEvent) == 0


def test_not_json_is_400(client, clock, db):
    r = bridge_post(client, clock, b"{oops")
    assert r.status_code == 400 and "JSON" in r.json()["error"]


def test_dissolve_instruction_shape():
    assert dissolve_instruction(group_id="wxg-1", instruction_id="ins-9", reason="长期无工作消息") == {
        "type": "dissolve", "group_id": "wxg-1", "instruction_id": "ins-9", "platform": "wechat",
        "reason": "长期无工作消息", "notice": ""}
