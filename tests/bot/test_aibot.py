"""The AI bot callback: JSON, receive id "", group @-mentions recorded as activity and answered."""
from __future__ import annotations

import pytest

import json

from sqlalchemy import select

from platforms.wecom.crypto import CallbackCrypto, signature
from handlers.dispatch import HINT
from storage.models import Group, Membership, Message, OutboxMessage, ProcessedEvent
from tests.bot.helpers import aibot_post, count
from tests.conftest import AIBOT_AES_KEY, AIBOT_TOKEN


def _decrypt_reply(body: dict, clock) -> dict:
    assert set(body) == {"encrypt", "msgsignature", "timestamp", "nonce"}
    assert body["msgsignature"] == signature(AIBOT_TOKEN, body["timestamp"], body["nonce"], body["encrypt"])
    c = CallbackCrypto(AIBOT_TOKEN, AIBOT_AES_KEY, "", tolerance=10**10, clock=clock)
    return json.loads(c.decrypt(body["encrypt"]))


def _group_text(msgid: str, text: str, user: str = "zhangsan", chat: str = "wrkSFfCgAAxxx") -> dict:
    return {"msgid": msgid, "aibotid": "AIBOTID", "chatid": chat, "chattype": "group", "from": {"userid": user},
            "response_url": "https://example.invalid/resp", "msgtype": "text", "text": {"content": text}}


def test_url_verification(client, clock):
    from platforms.wecom.crypto import encrypt_for_tests

    ts = str(int(clock().timestamp()))
    enc, sig = encrypt_for_tests(AIBOT_TOKEN, AIBOT_AES_KEY, "", "8512343", ts, "n1")
    r = client.get("/wecom/aibot/callback", params={"msg_signature": sig, "timestamp": ts, "nonce": "n1",
                                                    "echostr": enc})
    assert (r.status_code, r.content) == (200, b"8512343")
    # a ciphertext made for the app's receive id (CorpID) is not for the bot
    enc2, sig2 = encrypt_for_tests(AIBOT_TOKEN, AIBOT_AES_KEY, "wx5823bf96d3bd56c7", "8512343", ts, "n2")
    r = client.get("/wecom/aibot/callback", params={"msg_signature": sig2, "timestamp": ts, "nonce": "n2",
                                                    "echostr": enc2})
    assert r.status_code == 403


def test_group_mention_is_recorded_and_answered(client, clock, db):
    r = aibot_post(client, clock, _group_text("MSG1", "@群治助手 我的群"), nonce="a1")
    assert r.status_code == 200
    reply = _decrypt_reply(r.json(), clock)
    assert reply["msgtype"] == "stream"
    assert reply["stream"]["finish"] is True
    assert reply["stream"]["content"]  # the answer to 我的群
    assert r.json()["nonce"] == "a1" and r.json()["timestamp"] == str(int(clock().timestamp()))
    with db.session() as s:
        g = s.get(Group, "wrkSFfCgAAxxx")
        assert g is not None and g.platform == "aibot"
        assert s.execute(select(Membership.person_id).where(Membership.group_id == g.id)).scalars().all() == [
            "zhangsan"]
        msgs = s.execute(select(Message)).scalars().all()
        assert [(m.group_id, m.sender_id, m.dedupe_key) for m in msgs] == [("wrkSFfCgAAxxx", "zhangsan", "aibot:MSG1")]
    assert count(db, ProcessedEvent) == 1


def test_group_mention_text_has_the_mention_removed(client, clock, db, monkeypatch):
    seen = []
    runtime = client.app.state.runtime
    original = runtime.process

    def spy(event):
        seen.append(event)
        return original(event)

    monkeypatch.setattr(runtime, "process", spy)
    monkeypatch.setattr(runtime, "group_commit", False)  # the replaced handler, one event at a time
    aibot_post(client, clock, _group_text("MSG2", "@群治助手 帮助"), nonce="a2")
    assert len(seen) == 1
    e = seen[0]
    assert (e.platform, e.kind, e.group_id, e.mentioned_bot, e.text, e.msg_id) == (
        "aibot", "message", "wrkSFfCgAAxxx", True, "帮助", "MSG2")


def test_direct_chat_and_retry(client, clock, db):
    data = {"msgid": "D1", "aibotid": "AIBOTID", "chattype": "single", "from": {"userid": "lisi"},
            "msgtype": "text", "text": {"content": "今天天气不错"}}  # (hello is a greeting since issue 13)
    r = aibot_post(client, clock, data, nonce="b1")
    assert r.status_code == 200
    assert _decrypt_reply(r.json(), clock)["stream"]["content"] == HINT
    assert count(db, Group) == 0
    again = aibot_post(client, clock, data, nonce="b2")  # the platform retries
    assert again.status_code == 200
    assert _decrypt_reply(again.json(), clock)["stream"]["content"] == HINT  # answered as the first time
    assert count(db, ProcessedEvent) == 1


def test_enter_chat_answers_text_when_there_is_a_welcome(client, clock, db, monkeypatch):
    from governance.events import Reply

    runtime = client.app.state.runtime
    monkeypatch.setattr(runtime, "process", lambda event: [Reply("欢迎使用群治")] if event.kind == "enter_chat" else [])
    monkeypatch.setattr(runtime, "group_commit", False)  # the replaced handler, one event at a time
    data = {"msgid": "E1", "create_time": int(clock().timestamp()), "aibotid": "AIBOTID", "chattype": "single",
            "from": {"userid": "lisi"}, "msgtype": "event", "event": {"eventtype": "enter_chat"}}
    r = aibot_post(client, clock, data, nonce="c1")
    assert _decrypt_reply(r.json(), clock) == {"msgtype": "text", "text": {"content": "欢迎使用群治"}}


def test_card_click_event_is_parsed(client, clock, db, monkeypatch):
    seen = []
    runtime = client.app.state.runtime
    monkeypatch.setattr(runtime, "process", lambda event: seen.append(event) or [])
    monkeypatch.setattr(runtime, "group_commit", False)  # the replaced handler, one event at a time
    data = {"msgid": "C1", "aibotid": "AIBOTID", "chatid": "wrkG", "chattype": "group", "from": {"userid": "lisi"},
            "msgtype": "event", "event": {"eventtype": "template_card_event", "template_card_event": {
                "card_type": "vote_interaction", "event_key": "submit", "task_id": "keep:g1:42",
                "selected_items": {"selected_item": [{"question_key": "q", "option_ids": {"option_id": ["keep"]}}]}}}}
    r = aibot_post(client, clock, data, nonce="d1")
    assert (r.status_code, r.content) == (200, b"")
    assert seen[0].kind == "card_click"
    assert seen[0].data["card_kind"] == "keep"
    assert seen[0].data["selected"] == [{"question_key": "q", "option_ids": ["keep"]}]


def test_card_replies_are_queued_with_the_response_url(client, clock, db, monkeypatch):
    from governance.events import Reply
    from storage import repo

    runtime = client.app.state.runtime

    def process(event):
        with runtime.db.session() as s:
            repo.mark_processed(s, event.dedupe_key, event.at)
        return [Reply("请确认"), Reply("卡片", card={"kind": "keep"})]

    monkeypatch.setattr(runtime, "process", process)
    monkeypatch.setattr(runtime, "group_commit", False)  # the replaced handler, one event at a time
    r = aibot_post(client, clock, _group_text("MSG9", "@群治助手 我的群"), nonce="e1")
    assert _decrypt_reply(r.json(), clock)["stream"]["content"] == "请确认"
    with db.session() as s:
        row = s.execute(select(OutboxMessage)).scalar_one()
        assert (row.channel, row.recipient) == ("aibot", "wrkSFfCgAAxxx")
        assert row.payload["response_url"] == "https://example.invalid/resp"
        assert row.payload["card"] == {"kind": "keep"}


def test_refusals(client, clock, db):
    good = _group_text("X1", "@群治助手 帮助")
    assert aibot_post(client, clock, good, nonce="f1", signature="0" * 40).status_code == 403
    stale = str(int(clock().timestamp()) - 3600)
    assert aibot_post(client, clock, good, nonce="f2", timestamp=stale).status_code == 403
    assert client.post("/wecom/aibot/callback", params={"msg_signature": "x", "timestamp": "1", "nonce": "n"},
                       content=b"{not json").status_code == 400
    assert client.post("/wecom/aibot/callback", params={"msg_signature": "x", "timestamp": "1", "nonce": "n"},
                       json=["encrypt"]).status_code == 400
    assert aibot_post(client, clock, good, nonce="f3").status_code == 200
    # a nonce seen before is no refusal (WeCom resends requests as they were): the dedupe decides
    assert aibot_post(client, clock, _group_text("X2", "帮助"), nonce="f3").status_code == 200
    assert count(db, ProcessedEvent) == 2


@pytest.mark.parametrize("bulk", [True, False])
def test_a_ritual_ack_to_the_bot_is_stored_but_not_answered(client, clock, db, bulk):
    """"@群治 收到" in a group is activity (stored, counted as ritual) and gets no 没听懂 reply:
    answering an acknowledgement would be noise for the whole group. Work text still gets the hint."""
    client.app.state.runtime.bulk = bulk
    r = aibot_post(client, clock, _group_text("R1", "@群治助手 收到"), nonce="r1")
    assert (r.status_code, r.content) == (200, b"")
    r = aibot_post(client, clock, _group_text("R2", "@群治助手 今天下午三点开会"), nonce="r2")
    assert r.status_code == 200 and _decrypt_reply(r.json(), clock)["stream"]["content"] == HINT
    with db.session() as s:
        g = s.get(Group, "wrkSFfCgAAxxx")
        assert (g.message_count, g.ritual_count) == (2, 1)
