"""No lost retry: WeCom resends a request it got no good answer to, possibly byte for byte. The
durable dedupe (processed_events) is the replay defence: a repeat of a stored request answers 200
with the same passive reply and stores nothing; a repeat of one never stored is processed."""
from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from platforms.wecom.crypto import encrypt_for_tests
from handlers.dispatch import HINT
from storage.models import Group, Membership, Message, OutboxMessage, Person, ProcessedEvent
from tests.bot.helpers import bridge_post, decrypt_xml_reply, envelope, text_xml
from tests.bot.test_aibot import _decrypt_reply
from tests.conftest import AIBOT_AES_KEY, AIBOT_TOKEN, WECOM_AES_KEY, WECOM_CORP_ID, WECOM_TOKEN

MODELS = (Message, ProcessedEvent, Person, Group, Membership, OutboxMessage)


def counts(db) -> tuple[int, ...]:
    with db.session() as s:
        return tuple(s.execute(select(func.count()).select_from(m)).scalar_one() for m in MODELS)


def _wecom_request(clock, plaintext: str, nonce: str = "r1"):
    ts = str(int(clock().timestamp()))
    enc, sig = encrypt_for_tests(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORP_ID, plaintext, ts, nonce)
    return {"msg_signature": sig, "timestamp": ts, "nonce": nonce}, envelope(enc).encode()


def _aibot_request(clock, data: dict, nonce: str = "r1"):
    ts = str(int(clock().timestamp()))
    enc, sig = encrypt_for_tests(AIBOT_TOKEN, AIBOT_AES_KEY, "", json.dumps(data, ensure_ascii=False), ts, nonce)
    return {"msg_signature": sig, "timestamp": ts, "nonce": nonce}, json.dumps({"encrypt": enc}).encode()


def _content(response) -> str:
    plain = decrypt_xml_reply(response.text)
    start = plain.index("<Content><![CDATA[") + len("<Content><![CDATA[")
    return plain[start:plain.index("]]></Content>")]


def _miss_the_deadline_without_storing(monkeypatch, runtime):
    """The next event is not stored (its handler fails after the deadline): the request answers 503."""
    def slow_failure(event):
        time.sleep(0.2)
        raise RuntimeError("database gone")

    monkeypatch.setattr(runtime, "process", slow_failure)
    monkeypatch.setattr(runtime, "group_commit", False)  # the replaced handler, one event at a time
    original = runtime.process_async

    async def short_deadline(event, **kw):
        return await original(event, deadline=0.05, **kw)

    monkeypatch.setattr(runtime, "process_async", short_deadline)


@pytest.mark.parametrize("text", ["帮助", "今天天气不错"], ids=["command", "hint-bulk"])
def test_wecom_retry_of_a_request_never_stored_is_processed(client, clock, db, monkeypatch, text):
    runtime = client.app.state.runtime
    q, body = _wecom_request(clock, text_xml("zhangsan", text, int(clock().timestamp()), "880001"))
    with monkeypatch.context() as m:
        _miss_the_deadline_without_storing(m, runtime)
        assert client.post("/wecom/callback", params=q, content=body).status_code == 503
        time.sleep(0.3)
    assert counts(db) == (0, 0, 0, 0, 0, 0)
    clock.advance(seconds=6)  # WeCom resends a few seconds later, byte for byte
    r = client.post("/wecom/callback", params=q, content=body)
    assert r.status_code == 200
    first = _content(r)
    assert ("报备" in first) if text == "帮助" else (first == HINT)
    assert counts(db)[1] == 1  # stored now
    # and a repeat of the stored request: the same passive reply, nothing stored
    before = counts(db)
    again = client.post("/wecom/callback", params=q, content=body)
    assert again.status_code == 200 and _content(again) == first
    assert counts(db) == before


def test_wecom_repeat_of_a_stored_command_answers_the_same_reply_and_stores_nothing(client, clock, db):
    q, body = _wecom_request(clock, text_xml("zhangsan", "报备 秋粮收购专班 用途:秋粮收购调度 单位:城关镇 类别:临时群 "
                                                          "到期:12月31日", int(clock().timestamp()), "880002"))
    r = client.post("/wecom/callback", params=q, content=body)
    assert r.status_code == 200 and "已登记" in _content(r)
    before = counts(db)
    clock.advance(seconds=2)
    for _ in range(3):
        again = client.post("/wecom/callback", params=q, content=body)
        assert again.status_code == 200 and _content(again) == _content(r)
    assert counts(db) == before


def test_wecom_repeat_after_a_late_answer_does_not_answer_twice(client, clock, db, monkeypatch):
    """The first attempt missed the deadline but was stored later and its reply queued in the
    outbox: a repeat then answers an empty 200 (the reply is on its way), never a second copy."""
    runtime = client.app.state.runtime
    original = runtime.process_async

    async def short_deadline(event, **kw):
        return await original(event, deadline=0.0, **kw)

    q, body = _wecom_request(clock, text_xml("lisi", "帮助", int(clock().timestamp()), "880003"))
    with monkeypatch.context() as m:
        m.setattr(runtime, "process_async", short_deadline)
        assert client.post("/wecom/callback", params=q, content=body).status_code == 503
        for _ in range(100):
            if counts(db)[-1]:
                break
            time.sleep(0.05)
    with db.session() as s:
        late = s.execute(select(OutboxMessage)).scalar_one()
        assert "报备" in late.payload["text"]
    r = client.post("/wecom/callback", params=q, content=body)
    assert (r.status_code, r.text) == (200, "")
    assert counts(db)[-1] == 1


def test_aibot_retry_of_a_request_never_stored_is_processed(client, clock, db, monkeypatch):
    runtime = client.app.state.runtime
    data = {"msgid": "AR1", "aibotid": "B", "chatid": "wrkR", "chattype": "group", "from": {"userid": "zhangsan"},
            "msgtype": "text", "text": {"content": "@群治 帮助"}}
    q, body = _aibot_request(clock, data)
    with monkeypatch.context() as m:
        _miss_the_deadline_without_storing(m, runtime)
        assert client.post("/wecom/aibot/callback", params=q, content=body).status_code == 503
        time.sleep(0.3)
    assert counts(db) == (0, 0, 0, 0, 0, 0)
    r = client.post("/wecom/aibot/callback", params=q, content=body)
    assert r.status_code == 200
    first = _decrypt_reply(r.json(), clock)
    assert "报备" in first["stream"]["content"]
    before = counts(db)
    again = client.post("/wecom/aibot/callback", params=q, content=body)
    assert again.status_code == 200 and _decrypt_reply(again.json(), clock) == first
    assert counts(db) == before


def test_bridge_repeat_returns_the_same_replies_and_stores_nothing(client, clock, db):
    event = {"id": "rep-1", "type": "message", "platform": "wechat", "group_id": "wxg-r", "sender_id": "wx-zhang",
             "text": "@群治 帮助", "at": "2026-11-23T10:00:00+08:00", "mentioned_bot": True}
    r = bridge_post(client, clock, event)
    assert r.status_code == 200 and r.json()["replies"] and "报备" in r.json()["replies"][0]["text"]
    before = counts(db)
    again = bridge_post(client, clock, event)
    assert again.status_code == 200 and again.json() == r.json()
    assert counts(db) == before
