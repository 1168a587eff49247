"""DingTalk callbacks: the robot's timestamp+sign, the event subscription's AES (CorpId receive
id), card taps recorded anonymously and updated once through the fake DingTalk."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from platforms.dingtalk.inbound import EventCrypto, robot_sign
from platforms.wecom.crypto import CallbackCrypto, encrypt_for_tests, signature
from storage import repo
from storage.models import Group, Membership, Message, OutboxMessage, Person, ProcessedEvent, PulseAsk, PulseResponse
from tests.bot.helpers import count
from tests.conftest import make_settings
from tests.fakes.fake_dingtalk import APP_KEY, APP_SECRET

CORP_ID = "dingcorp0123456789"
TOKEN = "dingCallbackToken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


@pytest.fixture
def settings():
    return make_settings(dingtalk_app_key=APP_KEY, dingtalk_app_secret=APP_SECRET, dingtalk_corp_id=CORP_ID,
                         dingtalk_callback_token=TOKEN, dingtalk_callback_aes_key=AES_KEY,
                         dingtalk_api_base="http://127.0.0.1:9", dingtalk_oapi_base="http://127.0.0.1:9")


def _ms(clock) -> str:
    return str(int(clock().timestamp() * 1000))


def post(client, clock, path, data, *, ts=None, secret=APP_SECRET, sign=None):
    ts = ts or _ms(clock)
    return client.post(path, content=json.dumps(data, ensure_ascii=False).encode(),
                       headers={"timestamp": ts, "sign": sign or robot_sign(ts, secret),
                                "Content-Type": "application/json"})


def group_message(clock, msg_id="msgA1", text="@群治 我的群", user="zhangsan", cid="cidGroupA==", at=True):
    return {"msgId": msg_id, "msgtype": "text", "conversationType": "2", "conversationId": cid,
            "conversationTitle": "秋粮收购专班", "senderStaffId": user, "senderNick": "张三", "isInAtList": at,
            "robotCode": APP_KEY, "createAt": int(clock().timestamp() * 1000), "text": {"content": text}}


# --- signature vectors ----------------------------------------------------------------------------
def test_robot_sign_vector():
    # computed independently of robot_sign: Base64(HMAC-SHA256(secret, ts + "\n" + secret))
    ts, secret = "1577262236757", "this is a secret"
    expected = base64.b64encode(hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()).decode()
    assert robot_sign(ts, secret) == expected
    # fixed vector, from `printf '1577262236757\nthis is a secret' | openssl dgst -sha256 -hmac "this is a secret" -binary | base64`
    assert robot_sign(ts, secret) == "DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA="
    assert robot_sign(ts, secret) != robot_sign(str(int(ts) + 1), secret)


def test_event_crypto_is_wecoms_with_the_corp_id(clock):
    c = EventCrypto(TOKEN, AES_KEY, CORP_ID, tolerance=600, clock=clock)
    ts = _ms(clock)
    enc, sig = encrypt_for_tests(TOKEN, AES_KEY, CORP_ID, '{"EventType":"check_url"}', ts, "n1")
    assert c.verify_and_decrypt(sig, ts, "n1", enc) == '{"EventType":"check_url"}'
    # wechatpy's own decryptor agrees with what EventCrypto encrypts
    other = CallbackCrypto(TOKEN, AES_KEY, CORP_ID, tolerance=10**10, clock=clock)
    assert other.decrypt(c.answer()["encrypt"]) == "success"


# --- robot callback -------------------------------------------------------------------------------
def test_group_mention_is_recorded_and_answered_in_the_body(client, clock, db):
    r = post(client, clock, "/dingtalk/robot", group_message(clock))
    assert r.status_code == 200
    assert r.json()["msgtype"] == "text" and r.json()["text"]["content"]
    with db.session() as s:
        g = s.get(Group, "dingtalk:cidGroupA==")  # DingTalk's ids are stored scoped, as the roster's
        assert g is not None and g.platform == "dingtalk" and g.name == "秋粮收购专班"
        assert s.execute(select(Membership.person_id).where(Membership.group_id == g.id)).scalars().all() == [
            "dingtalk:zhangsan"]
        assert [m.dedupe_key for m in s.execute(select(Message)).scalars()] == ["dingtalk:msgA1"]


def test_direct_chat_is_answered(client, clock, db):
    data = {**group_message(clock, msg_id="msgD1", text="帮助"), "conversationType": "1"}
    r = post(client, clock, "/dingtalk/robot", data)
    assert r.status_code == 200
    body = r.json()
    if body:  # one short answer in the body, else the outbox to the person
        assert body["msgtype"] in ("text", "markdown")
    else:
        with db.session() as s:
            assert {(o.channel, o.recipient) for o in s.execute(select(OutboxMessage)).scalars()} == {
                ("dingtalk", "dingtalk:zhangsan")}
    assert count(db, Message) == 0  # a direct chat is no group activity
    assert count(db, ProcessedEvent) == 1


@pytest.mark.parametrize("how", ["forged", "other_secret", "stale", "future", "missing", "not_digits"])
def test_forged_or_stale_robot_callbacks_are_refused_with_nothing_changed(client, clock, db, how):
    data = group_message(clock)
    ts = _ms(clock)
    kw = {}
    if how == "forged":
        kw = {"sign": base64.b64encode(b"x" * 32).decode()}
    elif how == "other_secret":
        kw = {"secret": "another-apps-secret"}
    elif how == "stale":
        kw = {"ts": str(int(ts) - 601_000)}
    elif how == "future":
        kw = {"ts": str(int(ts) + 601_000)}
    if how == "missing":
        r = client.post("/dingtalk/robot", json=data)
    elif how == "not_digits":
        r = client.post("/dingtalk/robot", json=data, headers={"timestamp": "abc", "sign": robot_sign("abc", APP_SECRET)})
    else:
        r = post(client, clock, "/dingtalk/robot", data, **kw)
    assert r.status_code == 403 and r.text == "签名校验失败"
    assert count(db, Group) == count(db, Message) == count(db, ProcessedEvent) == count(db, Person) == 0


def test_within_the_window_is_accepted(client, clock, db):
    r = post(client, clock, "/dingtalk/robot", group_message(clock), ts=str(int(_ms(clock)) - 590_000))
    assert r.status_code == 200 and count(db, Message) == 1


def test_a_replayed_callback_stores_nothing_more(client, clock, db):
    data = group_message(clock)
    ts = _ms(clock)
    first = post(client, clock, "/dingtalk/robot", data, ts=ts)
    clock.advance(seconds=30)
    again = post(client, clock, "/dingtalk/robot", data, ts=ts)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert count(db, Message) == 1 and count(db, ProcessedEvent) == 1
    with db.session() as s:
        assert s.get(Group, "dingtalk:cidGroupA==").message_count == 1


@pytest.mark.parametrize("bad", [{"text": ["list"]}, {"msgId": "x" * 500}, {"senderStaffId": 42},
                                 {"createAt": "soon"}, {"createAt": 10**13 * 5}])
def test_malformed_robot_message_is_400_with_nothing_changed(client, clock, db, bad):
    r = post(client, clock, "/dingtalk/robot", {**group_message(clock), **bad})
    assert r.status_code == 400 and r.text == "请求格式错误"
    assert count(db, Group) == count(db, Message) == count(db, ProcessedEvent) == 0


def test_not_configured_is_404(db, clock):
    from fastapi.testclient import TestClient

    from bot.app import create_app
    from bot.runtime import Runtime

    s = make_settings(database_url=db.url)
    app = create_app(runtime=Runtime(s, db=db, clock=clock), start_scheduler=False)
    with TestClient(app) as c:
        assert post(c, clock, "/dingtalk/robot", group_message(clock)).status_code == 404
        assert c.post("/dingtalk/events", json={"encrypt": "x"}).status_code == 404


# --- event subscription ---------------------------------------------------------------------------
def _event_post(client, clock, payload: dict, *, receive_id=CORP_ID, ts=None, nonce="n1", sig=None):
    ts = ts or _ms(clock)
    enc, good = encrypt_for_tests(TOKEN, AES_KEY, receive_id, json.dumps(payload, ensure_ascii=False), ts, nonce)
    return client.post("/dingtalk/events", params={"signature": sig or good, "timestamp": ts, "nonce": nonce},
                       json={"encrypt": enc})


def _answer(r, clock) -> str:
    body = r.json()
    assert set(body) == {"msg_signature", "timeStamp", "nonce", "encrypt"}
    assert body["msg_signature"] == signature(TOKEN, body["timeStamp"], body["nonce"], body["encrypt"])
    return CallbackCrypto(TOKEN, AES_KEY, CORP_ID, tolerance=10**10, clock=clock).decrypt(body["encrypt"])


def test_url_check_answers_encrypted_success(client, clock):
    r = _event_post(client, clock, {"EventType": "check_url"})
    assert r.status_code == 200 and _answer(r, clock) == "success"


def test_member_and_title_events_change_the_group(client, clock, db):
    post(client, clock, "/dingtalk/robot", group_message(clock))
    t = int(clock().timestamp() * 1000)
    r = _event_post(client, clock, {"EventType": "chat_add_member", "OpenConversationId": "cidGroupA==",
                                    "Operator": "zhangsan", "UserId": ["lisi", "wangwu"], "TimeStamp": t})
    assert r.status_code == 200 and _answer(r, clock) == "success"
    r = _event_post(client, clock, {"EventType": "chat_update_title", "OpenConversationId": "cidGroupA==",
                                    "Operator": "zhangsan", "Title": "秋粮收购专班（二期）", "TimeStamp": t + 1},
                    nonce="n2")
    assert r.status_code == 200
    with db.session() as s:
        assert set(repo.member_ids(s, "dingtalk:cidGroupA==")) == {"dingtalk:zhangsan", "dingtalk:lisi",
                                                                   "dingtalk:wangwu"}
        assert s.get(Group, "dingtalk:cidGroupA==").name == "秋粮收购专班（二期）"


@pytest.mark.parametrize("how", ["forged", "other_corp", "stale"])
def test_forged_or_foreign_events_are_refused(client, clock, db, how):
    payload = {"EventType": "chat_add_member", "OpenConversationId": "cidX==", "Operator": "a", "UserId": ["b"],
               "TimeStamp": int(clock().timestamp() * 1000)}
    if how == "forged":
        r = _event_post(client, clock, payload, sig="0" * 40)
    elif how == "other_corp":
        r = _event_post(client, clock, payload, receive_id="dingothercorp")
    else:
        r = _event_post(client, clock, payload, ts=str(int(_ms(clock)) - 3_600_000))
    assert r.status_code == 403
    assert count(db, Group) == count(db, ProcessedEvent) == count(db, Membership) == 0


# --- cards ---------------------------------------------------------------------------------------
@pytest.fixture
def dt_client(db, clock, fake_dingtalk):
    from fastapi.testclient import TestClient

    from bot.app import create_app
    from bot.runtime import Runtime

    s = make_settings(database_url=db.url, dingtalk_app_key=APP_KEY, dingtalk_app_secret=APP_SECRET,
                      dingtalk_api_base=fake_dingtalk.url, dingtalk_oapi_base=fake_dingtalk.url)
    rt = Runtime(s, db=db, clock=clock)
    app = create_app(runtime=rt, start_scheduler=False)
    with TestClient(app) as c:
        yield c, rt


def test_a_pulse_card_tap_is_recorded_anonymously_and_the_card_updated_once(dt_client, clock, db, fake_dingtalk):
    from platforms.dingtalk.sender import DingTalkSender
    from scheduler.outbox import Dispatcher
    from scheduler.routing import build_senders
    from storage import feedback

    client, rt = dt_client
    sender = DingTalkSender(rt.settings)
    biz = sender.send_card(["lisi"], feedback.pulse_card("pulse:2026-W48")).msgid
    assert fake_dingtalk.cards[biz]["receiver"] == {"userId": "lisi"}
    assert [b["id"] for b in fake_dingtalk.cards[biz]["data"]["contents"][1]["actions"]] == ["pulse:1", "pulse:2",
                                                                                          "pulse:3"]
    with db.session() as s:
        repo.get_or_create_person(s, "dingtalk:lisi", clock()).unit = "城关镇"
        s.add(PulseAsk(person_id="dingtalk:lisi", asked_at=clock() - timedelta(hours=1)))
    tap = {"outTrackId": biz, "userId": "lisi", "corpId": CORP_ID, "type": "actionCallback",
           "content": json.dumps({"cardPrivateData": {"actionIds": ["pulse:3"], "params": {}}})}
    for _ in range(2):  # a second tap on the same button stores nothing
        r = post(client, clock, "/dingtalk/card", tap)
        assert r.status_code == 200
    with db.session() as s:
        answers = s.execute(select(PulseResponse)).scalars().all()
        assert [a.value for a in answers] == [3]
        assert "lisi" not in answers[0].voter_key
        rows = s.execute(select(OutboxMessage)).scalars().all()
        assert [(o.channel, o.recipient) for o in rows] == [("card_update", "dingtalk:" + biz)]
        assert "lisi" not in json.dumps(rows[0].payload, ensure_ascii=False)
        keys = s.execute(select(ProcessedEvent.key)).scalars().all()
        assert keys and all("lisi" not in k and biz not in k for k in keys)
    Dispatcher(db, build_senders(rt.settings), clock=clock).drain(max_rounds=5)
    card = fake_dingtalk.cards[biz]
    assert card["updates"] == 1
    assert card["data"]["contents"][0]["text"] == "已收到，谢谢（匿名）"


def test_a_forged_card_tap_is_refused(dt_client, clock, db):
    client, _ = dt_client
    tap = {"outTrackId": "pulse:w|x", "userId": "lisi", "type": "actionCallback",
           "content": json.dumps({"cardPrivateData": {"actionIds": ["pulse:3"]}})}
    r = post(client, clock, "/dingtalk/card", tap, secret="wrong")
    assert r.status_code == 403
    assert count(db, PulseResponse) == count(db, ProcessedEvent) == count(db, OutboxMessage) == 0


@pytest.mark.parametrize("content", ["[" * 5000 + "]" * 5000, "not json", "[1, 2]",
                                     json.dumps({"cardPrivateData": {"actionIds": "pulse:3"}})])
def test_a_malformed_card_tap_is_400_with_nothing_changed(dt_client, clock, db, content):
    client, _ = dt_client
    tap = {"outTrackId": "pulse:w|x", "userId": "lisi", "type": "actionCallback", "content": content[:20000]}
    r = post(client, clock, "/dingtalk/card", tap)
    assert r.status_code == 400
    assert count(db, PulseResponse) == count(db, ProcessedEvent) == count(db, OutboxMessage) == 0


def test_a_useless_vote_tap_is_anonymous(dt_client, clock, db):
    from storage.models import UselessVote

    client, _ = dt_client
    with db.session() as s:
        repo.ensure_group(s, group_id="dingtalk:cidU==", platform="dingtalk", at=clock() - timedelta(days=90),
                          name="某某群")
        repo.add_members(s, "dingtalk:cidU==", ["dingtalk:lisi", "dingtalk:wangwu"], clock() - timedelta(days=90))
    tap = {"outTrackId": "useless:dingtalk:cidU==|r4nd0m", "userId": "lisi", "type": "actionCallback",
           "content": json.dumps({"cardPrivateData": {"actionIds": ["useless:dingtalk:cidU=="], "params": {}}})}
    assert post(client, clock, "/dingtalk/card", tap).status_code == 200
    assert post(client, clock, "/dingtalk/card", tap).status_code == 200  # the same tap again
    with db.session() as s:
        votes = s.execute(select(UselessVote)).scalars().all()
        assert len(votes) == 1 and all("lisi" not in str(v) for v in (votes[0].voter_key,))
        assert s.execute(select(Message)).scalars().all() == []
        assert all("lisi" not in k for k in s.execute(select(ProcessedEvent.key)).scalars())
