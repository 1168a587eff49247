"""The self-built app callback, driven the way WeCom drives it (real crypto, real databases)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from handlers.dispatch import HINT
from storage.models import Group, Message, OutboxMessage, Person, ProcessedEvent
from tests.bot.helpers import (GET_ANSWER, GET_ECHOSTR, GET_NONCE, GET_SIGNATURE, GET_TIMESTAMP, POST_ENCRYPT,
                               POST_MSGID, POST_NONCE, POST_SIGNATURE, POST_TIMESTAMP, WeComSim, at_2014, count,
                               decrypt_xml_reply, envelope, text_xml)
from tests.conftest import WECOM_CORP_ID


def _all_counts(db) -> tuple[int, ...]:
    return tuple(count(db, m) for m in (ProcessedEvent, Person, Group, Message, OutboxMessage))


def _get_official(client):
    return client.get("/wecom/callback", params={"msg_signature": GET_SIGNATURE, "timestamp": GET_TIMESTAMP,
                                                 "nonce": GET_NONCE, "echostr": GET_ECHOSTR})


def _post_official(client, signature=POST_SIGNATURE, body=None):
    return client.post("/wecom/callback", params={"msg_signature": signature, "timestamp": POST_TIMESTAMP,
                                                  "nonce": POST_NONCE},
                       content=body if body is not None else envelope(POST_ENCRYPT))


# --- the official vectors -------------------------------------------------------------------------
def test_official_get_vector_answers_plain_echostr(client, clock):
    at_2014(clock, GET_TIMESTAMP)
    r = _get_official(client)
    assert r.status_code == 200
    assert r.content == GET_ANSWER.encode()  # no quotes, no newline, no BOM
    assert r.headers["content-type"].startswith("text/plain")


def test_official_post_vector_is_processed_and_answered_passively(client, clock, db):
    at_2014(clock)
    r = _post_official(client)
    assert r.status_code == 200
    plain = decrypt_xml_reply(r.text)
    assert "<ToUserName><![CDATA[mycreate]]></ToUserName>" in plain
    assert f"<FromUserName><![CDATA[{WECOM_CORP_ID}]]></FromUserName>" in plain
    from handlers.commands.talk import GREETING

    assert f"<Content><![CDATA[{GREETING}]]></Content>" in plain  # "hello" is a greeting (issue 13)
    with db.session() as s:
        assert s.execute(select(ProcessedEvent.key)).scalars().all() == [f"wecom:{POST_MSGID}"]
        assert s.get(Person, "mycreate") is not None
    assert count(db, Group) == 0  # a direct message is no group activity


def test_official_vectors_are_stale_with_the_real_clock(client, clock, db):
    clock.set(datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc))
    assert _get_official(client).status_code == 403
    assert _post_official(client).status_code == 403
    assert _all_counts(db) == (0, 0, 0, 0, 0)


# --- refusals change nothing -----------------------------------------------------------------------
def test_forged_signature_is_refused(client, clock, db):
    at_2014(clock)
    r = _post_official(client, signature="0" * 40)
    assert r.status_code == 403
    assert _all_counts(db) == (0, 0, 0, 0, 0)
    sim = WeComSim(client, clock)
    r = sim.post_plain(text_xml("zhangsan", "帮助", int(clock().timestamp()), "m1"), signature="a" * 40)
    assert r.status_code == 403
    assert _all_counts(db) == (0, 0, 0, 0, 0)


def test_stale_timestamp_is_refused_even_when_signed(client, clock, db):
    sim = WeComSim(client, clock)
    old = str(int(clock().timestamp()) - 301)
    r = sim.post_plain(text_xml("zhangsan", "帮助", int(old), "m1"), timestamp=old)
    assert r.status_code == 403
    future = str(int(clock().timestamp()) + 301)
    assert sim.post_plain(text_xml("zhangsan", "帮助", int(future), "m2"), timestamp=future).status_code == 403
    edge = str(int(clock().timestamp()) - 299)
    assert sim.post_plain(text_xml("zhangsan", "帮助", int(edge), "m3"), timestamp=edge).status_code == 200
    assert count(db, ProcessedEvent) == 1


def test_a_byte_identical_repeat_is_answered_like_the_original(client, clock, db):
    """WeCom resends requests as they were: a repeat of a stored one is answered with the same
    passive reply and stores nothing (the durable dedupe is the replay defence, not a nonce cache)."""
    at_2014(clock)
    first = _post_official(client)
    assert first.status_code == 200
    before = _all_counts(db)
    r = _post_official(client)  # the very same request again
    assert r.status_code == 200
    from handlers.commands.talk import GREETING  # "hello" is a greeting (issue 13)

    assert decrypt_xml_reply(r.text).count(GREETING) == 1 and GREETING in decrypt_xml_reply(first.text)
    assert _all_counts(db) == before
    at_2014(clock, GET_TIMESTAMP)
    assert _get_official(client).status_code == 200
    assert _get_official(client).status_code == 200  # URL verification changes nothing either


@pytest.mark.parametrize("body", [
    "<xml><Encrypt>abc</Encrypt>",  # not well formed
    "not xml at all",
    "",
])
def test_malformed_xml_is_400(client, clock, db, body):
    at_2014(clock)
    assert _post_official(client, body=body).status_code == 400
    assert _all_counts(db) == (0, 0, 0, 0, 0)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<xml><ToUserName>&lol4;</ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>&xxe;</ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"""

DTD_ONLY = """<?xml version="1.0"?>
<!DOCTYPE xml SYSTEM "http://example.invalid/x.dtd">
<xml><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"""


@pytest.mark.parametrize("template", [BILLION_LAUGHS, EXTERNAL_ENTITY, DTD_ONLY], ids=["billion-laughs", "xxe", "dtd"])
def test_hostile_xml_envelope_is_400(client, clock, db, template):
    at_2014(clock)
    r = _post_official(client, body=template.replace("{enc}", POST_ENCRYPT))
    assert r.status_code == 400
    assert _all_counts(db) == (0, 0, 0, 0, 0)


@pytest.mark.parametrize("template", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion-laughs", "xxe"])
def test_hostile_xml_inside_the_ciphertext_is_400(client, clock, db, template):
    """A correctly signed and encrypted message whose plaintext is hostile XML."""
    sim = WeComSim(client, clock)
    r = sim.post_plain(template.replace("{enc}", "x"))
    assert r.status_code == 400
    assert _all_counts(db) == (0, 0, 0, 0, 0)


def test_wrong_receive_id_is_403(client, clock, db):
    """Encrypted for another corp: it decrypts, but it is not addressed to us → 403."""
    sim = WeComSim(client, clock, receive_id="wwANOTHERCORP")
    r = sim.say("zhangsan", "帮助", "m1")
    assert r.status_code == 403
    assert _all_counts(db) == (0, 0, 0, 0, 0)


def test_bad_ciphertext_is_400(client, clock, db):
    """Signed correctly but the ciphertext is garbage (not base64 / not whole blocks) → 400."""
    from platforms.wecom.crypto import signature
    from tests.conftest import WECOM_TOKEN

    ts = str(int(clock().timestamp()))
    for i, enc in enumerate(["!!!not-base64!!!", "QUJD", "A" * 44]):
        nonce = f"n{i}"
        r = client.post("/wecom/callback", params={"msg_signature": signature(WECOM_TOKEN, ts, nonce, enc),
                                                   "timestamp": ts, "nonce": nonce}, content=envelope(enc))
        assert r.status_code == 400, enc
    assert _all_counts(db) == (0, 0, 0, 0, 0)


def test_oversized_body_is_413(client, clock, db, settings):
    at_2014(clock)
    big = envelope(POST_ENCRYPT) + " " * (settings.max_body_bytes + 1)
    assert _post_official(client, body=big).status_code == 413
    assert _all_counts(db) == (0, 0, 0, 0, 0)


def test_missing_query_parameters_are_403(client, db):
    assert client.post("/wecom/callback", content=envelope(POST_ENCRYPT)).status_code == 403
    assert client.get("/wecom/callback").status_code == 403
    assert _all_counts(db) == (0, 0, 0, 0, 0)


# --- retries --------------------------------------------------------------------------------------
def test_retried_msgid_is_processed_once(client, clock, db):
    sim = WeComSim(client, clock)
    created = int(clock().timestamp())
    first = sim.post_plain(text_xml("zhangsan", "报备 秋粮收购专班 用途:秋粮收购调度 单位:城关镇 类别:临时群 到期:12月31日",
                                    created, "900001"))
    assert first.status_code == 200 and first.text  # answered passively
    groups, processed = count(db, Group), count(db, ProcessedEvent)
    assert processed == 1
    # WeCom retries the same message (new nonce, same MsgId)
    retry = sim.post_plain(text_xml("zhangsan", "报备 秋粮收购专班 用途:秋粮收购调度 单位:城关镇 类别:临时群 到期:12月31日",
                                    created, "900001"))
    assert retry.status_code == 200
    assert _reply_text(retry) == _reply_text(first)  # the same passive reply again, nothing stored
    assert count(db, Group) == groups
    assert count(db, ProcessedEvent) == 1
    assert count(db, OutboxMessage) == 0


# --- a conversation -------------------------------------------------------------------------------
def _reply_text(response) -> str:
    plain = decrypt_xml_reply(response.text)
    start = plain.index("<Content><![CDATA[") + len("<Content><![CDATA[")
    return plain[start:plain.index("]]></Content>")]


def test_help_is_answered_passively(client, clock):
    sim = WeComSim(client, clock)
    r = sim.say("zhangsan", "帮助", "700001")
    assert r.status_code == 200
    text = _reply_text(r)
    assert "报备" in text and "我的群" in text


def test_conversation_register_then_list_my_groups(client, clock, db):
    """报备 a temporary group, then 我的群 lists it (relies on handlers/commands/register.py)."""
    sim = WeComSim(client, clock)
    r1 = sim.say("zhangsan", "报备 秋粮收购专班 用途:秋粮收购调度 单位:城关镇 类别:临时群 到期:12月31日", "800001")
    assert r1.status_code == 200
    assert "已登记" in _reply_text(r1) and "秋粮收购专班" in _reply_text(r1)
    with db.session() as s:
        g = s.execute(select(Group)).scalar_one()
        assert (g.name, g.owner_id, g.unit, g.temporary) == ("秋粮收购专班", "zhangsan", "城关镇", True)
        assert g.expires_at.month == 12 and g.expires_at.day == 31
    clock.advance(minutes=1)
    r2 = sim.say("zhangsan", "我的群", "800002")
    assert r2.status_code == 200
    assert "秋粮收购专班" in _reply_text(r2)
    assert count(db, ProcessedEvent) == 2


def test_unknown_message_types_and_events_are_acknowledged(client, clock, db):
    sim = WeComSim(client, clock)
    created = int(clock().timestamp())
    image = (f"<xml><ToUserName>{WECOM_CORP_ID}</ToUserName><FromUserName>zhangsan</FromUserName>"
             f"<CreateTime>{created}</CreateTime><MsgType>image</MsgType><MsgId>1</MsgId></xml>")
    r = sim.post_plain(image)
    assert (r.status_code, r.text) == (200, "")
    assert count(db, ProcessedEvent) == 0


def test_several_replies_or_cards_go_to_the_outbox(client, clock, db, monkeypatch):
    from governance.events import Reply

    def two_replies(event):
        with client.app.state.runtime.db.session() as s:
            from storage import repo
            repo.mark_processed(s, event.dedupe_key, event.at)
        return [Reply("第一条"), Reply("卡片", card={"kind": "keep", "group_id": "g1"})]

    monkeypatch.setattr(client.app.state.runtime, "process", two_replies)
    monkeypatch.setattr(client.app.state.runtime, "group_commit", False)  # the replaced handler, one event at a time
    sim = WeComSim(client, clock)
    r = sim.say("lisi", "我的群", "600001")
    assert (r.status_code, r.text) == (200, "")
    with db.session() as s:
        rows = s.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars().all()
        assert [(o.channel, o.recipient, o.kind, o.payload["text"]) for o in rows] == [
            ("user", "lisi", "reply", "第一条"), ("user", "lisi", "reply", "卡片")]
        assert rows[1].payload["card"] == {"kind": "keep", "group_id": "g1"}
        assert rows[0].dedupe_key == "reply:wecom:600001:0"


def test_missed_deadline_answers_503_and_queues_later(client, clock, db, monkeypatch):
    """Nothing is acknowledged before it is stored: a missed deadline is a 503 (WeCom retries),
    and the replies of the slow attempt go out through the outbox when it finishes."""
    import time as _time

    from governance.events import Reply

    runtime = client.app.state.runtime

    def slow(event):
        _time.sleep(0.3)
        return [Reply("慢慢来")]

    monkeypatch.setattr(runtime, "process", slow)
    monkeypatch.setattr(runtime, "group_commit", False)  # the replaced handler, one event at a time
    original = runtime.process_async

    async def short_deadline(event, **kw):
        return await original(event, deadline=0.05, **kw)

    monkeypatch.setattr(runtime, "process_async", short_deadline)
    sim = WeComSim(client, clock)
    r = sim.say("wangwu", "我的群", "500001")
    assert r.status_code == 503
    for _ in range(50):
        if count(db, OutboxMessage):
            break
        _time.sleep(0.05)
    with db.session() as s:
        row = s.execute(select(OutboxMessage)).scalar_one()
        assert (row.channel, row.recipient, row.payload["text"]) == ("user", "wangwu", "慢慢来")
