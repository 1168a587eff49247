"""The Feishu callback (/feishu/callback) through the app: the handshake, events to neutral events,
activity per the app's scope, refusals that change nothing, and anonymous card taps."""
from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from platforms.feishu.inbound import to_event
from platforms.registry import by_name, reply_deadline
from storage.models import Group, Membership, Message, OutboxMessage, Person, ProcessedEvent, PulseResponse, UselessVote
from tests.feishu.helpers import (BOT, VERIFICATION_TOKEN, card_click, envelope, event, feishu_settings, message,
                                  signed)

PATH = "/feishu/callback"
ZHANG, LI = "ou_zhangsan0000000000000000000001", "ou_lisi00000000000000000000000002"
CHAT = "oc_chat0000000000000000000000001"


@pytest.fixture
def settings():
    return feishu_settings()


def _post(client, clock, payload: dict, *, ts: int | None = None, headers: dict | None = None):
    body = envelope(payload)
    h = signed(body, int(clock().timestamp()) if ts is None else ts) if headers is None else headers
    return client.post(PATH, content=body, headers=h)


def _count(db, model) -> int:
    with db.session() as s:
        return s.execute(select(func.count()).select_from(model)).scalar_one()


def test_url_verification_is_answered_at_once(client, clock):
    payload = {"challenge": "ajls384kdjx98XX", "token": VERIFICATION_TOKEN, "type": "url_verification"}
    body = envelope(payload)
    client.post(PATH, content=body, headers={"Content-Type": "application/json"})  # builds the crypto once
    start = time.monotonic()
    r = client.post(PATH, content=body, headers={"Content-Type": "application/json"})  # Feishu does not sign it
    assert time.monotonic() - start < 1.0
    assert (r.status_code, r.json()) == (200, {"challenge": "ajls384kdjx98XX"})
    bad = envelope({**payload, "token": "not-ours"})
    assert client.post(PATH, content=bad, headers={"Content-Type": "application/json"}).status_code == 403
    plain = json.dumps(payload).encode()  # unencrypted: refused (the Encrypt Key is required)
    assert client.post(PATH, content=plain, headers={"Content-Type": "application/json"}).status_code == 403


def test_group_mention_is_activity_and_a_command(client, clock, db):
    at = clock().timestamp()
    r = _post(client, clock, message(CHAT, ZHANG, "@_user_1 我的群", at=at, mentions=[BOT]))
    assert r.status_code == 200
    with db.session() as s:
        g = s.get(Group, "feishu:" + CHAT)
        assert g is not None and g.platform == "feishu"
        assert s.execute(select(Membership.person_id)).scalars().all() == ["feishu:" + ZHANG]
        [m] = s.execute(select(Message)).scalars().all()
        assert (m.group_id, m.sender_id) == ("feishu:" + CHAT, "feishu:" + ZHANG)
        rows = s.execute(select(OutboxMessage)).scalars().all()
        assert [(o.channel, o.recipient) for o in rows] == [("feishu_chat", "feishu:" + CHAT)]  # 我的群 answered


def test_direct_message_reply_goes_to_the_person(client, clock, db):
    r = _post(client, clock, message(None, ZHANG, "帮助", at=clock().timestamp()))
    assert r.status_code == 200
    with db.session() as s:
        rows = s.execute(select(OutboxMessage)).scalars().all()
        assert rows and {(o.channel, o.recipient) for o in rows} == {("feishu", "feishu:" + ZHANG)}


def test_activity_source_follows_the_scope():
    fs_mentions = feishu_settings().feishu
    fs_full = feishu_settings(feishu_group_msg_scope=True, feishu_bot_open_id=BOT).feishu
    assert (fs_mentions.activity, fs_full.activity) == ("mentions", "full")
    p = by_name("feishu")
    assert p.capabilities_for(feishu_settings()).activity == "mentions"
    assert p.capabilities_for(feishu_settings(feishu_group_msg_scope=True)).activity == "full"
    from platforms.capabilities import for_group, table

    class G:
        platform, source = "feishu", "activity"

    assert for_group(G(), feishu_settings(feishu_group_msg_scope=True)).activity == "full"
    assert table(feishu_settings())["feishu"].purge is True
    now = time.time()
    from datetime import datetime, timezone

    clock_now = datetime.fromtimestamp(now, tz=timezone.utc)
    plain = message(CHAT, ZHANG, "收到", at=now)
    mention = message(CHAT, ZHANG, "@_user_1 我的群", at=now, mentions=[BOT])
    other = message(CHAT, ZHANG, "@_user_1 看一下", at=now, mentions=[LI])
    # with the scope every message arrives: only a mention of the bot is addressed to it
    assert to_event(plain, clock_now, fs_full).mentioned_bot is False
    assert to_event(mention, clock_now, fs_full).mentioned_bot is True
    assert to_event(other, clock_now, fs_full).mentioned_bot is False
    assert to_event(mention, clock_now, fs_full).text == "我的群"
    # without it Feishu delivers only @-mentions of the bot
    assert to_event(plain, clock_now, fs_mentions).mentioned_bot is True


def test_forged_stale_and_replayed_callbacks_change_nothing(client, clock, db):
    at = clock().timestamp()
    payload = message(CHAT, ZHANG, "今天的报表已上传", at=at, event_id="evt-1")
    body = envelope(payload)
    forged = signed(body, int(at), key="someone-elses-key")
    assert client.post(PATH, content=body, headers=forged).status_code == 403
    stale = signed(body, int(at) - 301)
    assert client.post(PATH, content=body, headers=stale).status_code == 403
    tampered = signed(body, int(at))
    assert client.post(PATH, content=body.replace(b'"}', b'x"}'), headers=tampered).status_code == 403
    assert client.post(PATH, content=body, headers={"Content-Type": "application/json"}).status_code == 403
    for model in (Group, Person, Message, ProcessedEvent, OutboxMessage):
        assert _count(db, model) == 0, model
    # the real one, then Feishu's retry of it (same event_id, a new nonce and signature): stored once
    assert _post(client, clock, payload).status_code == 200
    clock.advance(seconds=15)
    assert _post(client, clock, payload).status_code == 200
    assert (_count(db, Message), _count(db, ProcessedEvent)) == (1, 1)


def test_malformed_events_are_400_and_change_nothing(client, clock, db):
    at = clock().timestamp()
    bad_type = message(CHAT, ZHANG, "x", at=at)
    bad_type["event"]["message"]["chat_id"] = 12345
    assert _post(client, clock, bad_type).status_code == 400
    too_long = message(CHAT, "ou_" + "x" * 80, "x", at=at)
    assert _post(client, clock, too_long).status_code == 400
    future = message(CHAT, ZHANG, "x", at=at + 3600)
    assert _post(client, clock, future).status_code == 400
    assert (_count(db, Message), _count(db, ProcessedEvent), _count(db, Group)) == (0, 0, 0)


def test_member_rename_and_disband_events(client, clock, db):
    at = clock().timestamp()
    added = event("im.chat.member.user.added_v1", {
        "chat_id": CHAT, "operator_id": {"open_id": ZHANG}, "name": "秋粮收购专班",
        "users": [{"name": "李四", "user_id": {"open_id": LI}}]}, at=at)
    assert _post(client, clock, added).status_code == 200
    with db.session() as s:
        assert s.get(Group, "feishu:" + CHAT).name == "秋粮收购专班"
        assert set(s.execute(select(Membership.person_id)).scalars()) == {"feishu:" + LI}
    renamed = event("im.chat.updated_v1", {"chat_id": CHAT, "operator_id": {"open_id": ZHANG},
                                           "after_change": {"name": "秋粮专班"}, "before_change": {"name": "秋粮收购专班"}},
                    at=at)
    assert _post(client, clock, renamed).status_code == 200
    removed = event("im.chat.member.user.deleted_v1", {"chat_id": CHAT, "operator_id": {"open_id": ZHANG},
                                                       "users": [{"name": "李四", "user_id": {"open_id": LI}}]}, at=at)
    assert _post(client, clock, removed).status_code == 200
    with db.session() as s:
        assert s.get(Group, "feishu:" + CHAT).name == "秋粮专班"
        assert s.execute(select(Membership.person_id)).scalars().all() == []
    disbanded = event("im.chat.disbanded_v1", {"chat_id": CHAT, "operator_id": {"open_id": ZHANG}}, at=at)
    assert _post(client, clock, disbanded).status_code == 200
    assert _count(db, ProcessedEvent) == 4


def test_reply_deadline_under_feishus_three_seconds():
    assert reply_deadline("feishu") <= 3.0


def test_pulse_card_tap_is_anonymous_and_updates_the_card_once(client, runtime, clock, db, fake_feishu):
    from platforms.feishu.sender import FeishuSender
    from scheduler.outbox import Dispatcher

    token = fake_feishu.issue_card_token()
    tap = card_click(ZHANG, "pulse:2", "pulse:5f3a9c", token, at=clock().timestamp(), event_id="card-evt-1")
    r = _post(client, clock, tap)
    assert (r.status_code, r.json()) == (200, {})
    assert _post(client, clock, tap).status_code == 200  # Feishu's retry: counted once
    with db.session() as s:
        answer = s.execute(select(PulseResponse)).scalar_one()
        assert answer.value == 2 and ZHANG not in answer.voter_key
        [upd] = s.execute(select(OutboxMessage)).scalars().all()
        assert (upd.channel, upd.recipient) == ("feishu_card", token)
        assert ZHANG not in json.dumps(upd.payload)
        keys = s.execute(select(ProcessedEvent.key)).scalars().all()
        assert keys and not any(ZHANG in k or "card-evt-1" in k for k in keys)  # hashed, names nobody
    sender = FeishuSender(feishu_settings(feishu_domain=fake_feishu.domain))
    d = Dispatcher(runtime.db, {"feishu_card": sender}, clock=clock, workers=1, global_per_second=None)
    assert d.drain() == 1
    d.close()
    [update] = fake_feishu.card_updates
    assert update["token"] == token and "已收到" in json.dumps(update["card"], ensure_ascii=False)
    assert "action" not in json.dumps(update["card"])  # no buttons left: one tap is all it takes
    assert ZHANG not in json.dumps(update)
    assert fake_feishu.card_tokens[token] == 1  # used once of its two


def test_useless_vote_card_tap_is_anonymous(client, clock, db):
    at = clock().timestamp()
    assert _post(client, clock, message(CHAT, ZHANG, "@_user_1 我的群", at=at, mentions=[BOT])).status_code == 200
    tap = card_click(ZHANG, "useless:feishu:" + CHAT, "useless:feishu:" + CHAT, "c-tok-2", at=at)
    assert _post(client, clock, tap).status_code == 200
    with db.session() as s:
        [vote] = s.execute(select(UselessVote)).scalars().all()
        assert ZHANG not in repr(vars(vote))
        upd = s.execute(select(OutboxMessage).where(OutboxMessage.channel == "feishu_card")).scalar_one()
        assert upd.recipient == "c-tok-2" and "已匿名" not in json.dumps(upd.payload, ensure_ascii=False)


def test_not_configured_is_404(clock):
    from fastapi.testclient import TestClient

    from bot.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(), start_scheduler=False)
    with TestClient(app) as c:
        assert c.post(PATH, content=b"{}").status_code == 404


def test_a_bridge_cannot_speak_for_feishu(client, clock, db):
    """Feishu has its own signed adapter: events naming platform ``feishu`` through the bridge are
    refused (they would touch Feishu's groups), with nothing stored."""
    from tests.bot.helpers import bridge_post

    e = {"id": "e1", "type": "message", "platform": "feishu", "group_id": CHAT, "group_name": "秋粮群",
         "sender_id": ZHANG, "text": "大家好", "at": clock().isoformat()}
    r = bridge_post(client, clock, e)
    assert r.status_code == 400 and "feishu" in r.text, r.text
    assert (_count(db, Group), _count(db, Message)) == (0, 0)
    assert bridge_post(client, clock, {**e, "platform": "wechat"}).status_code == 200  # the bridge still works


def test_settings_refuse_a_bad_domain_and_missing_keys_outside_development():
    from pydantic import ValidationError

    from tests.conftest import make_settings

    assert feishu_settings(feishu_domain="https://open.larksuite.com/").feishu.domain == "https://open.larksuite.com"
    for bad in ("http://open.feishu.cn", "https://open.feishu.cn/open-apis", "open.feishu.cn"):
        with pytest.raises(ValidationError, match="QUNZHI_FEISHU_DOMAIN"):
            feishu_settings(feishu_domain=bad)
    with pytest.raises(ValidationError, match="QUNZHI_FEISHU_APP_SECRET"):
        make_settings(environment="production", pseudonym_key="a-separate-pseudonym-key", feishu_app_id="cli_x",
                      feishu_encrypt_key="k" * 16, feishu_verification_token="t" * 16)
    with pytest.raises(ValidationError, match="QUNZHI_FEISHU_VERIFICATION_TOKEN"):
        make_settings(environment="production", pseudonym_key="a-separate-pseudonym-key",
                      feishu_encrypt_key="k" * 16)


def test_feishu_text_goes_through_the_ritual_classifier(client, clock, db):
    at = clock().timestamp()
    assert _post(client, clock, message(CHAT, ZHANG, "@_user_1 收到", at=at, mentions=[BOT])).status_code == 200
    assert _post(client, clock, message(CHAT, LI, "@_user_1 明天上午九点在三楼开调度会", at=at,
                                        mentions=[BOT])).status_code == 200
    with db.session() as s:
        rows = {m.sender_id: m.is_ritual for m in s.execute(select(Message)).scalars()}
    assert rows == {"feishu:" + ZHANG: True, "feishu:" + LI: False}
