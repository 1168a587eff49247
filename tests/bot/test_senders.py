"""Outbound senders against the fake WeCom server (real HTTP on 127.0.0.1)."""
from __future__ import annotations

import json

import pytest

from platforms.bridge.inbound import sign
from platforms.base import PermanentSendError, Sender, SendResult, TransientSendError
from platforms.bridge.sender import BridgeSender
from platforms.local.sender import RecordingSender
from platforms.wecom.sender import WeComSender
from tests.conftest import BRIDGE_SECRET, make_settings


@pytest.fixture
def sender(fake_wecom):
    return WeComSender(make_settings(wecom_api_base=fake_wecom.base_url), timeout=1.0)


def test_token_is_fetched_from_the_configured_base_and_reused(sender, fake_wecom):
    r = sender.send_text(["zhangsan", "lisi"], "您好")
    assert isinstance(r, SendResult) and r.ok and r.msgid and r.errcode == 0
    sender.send_markdown(["zhangsan"], "**注意**")
    token_calls = fake_wecom.calls_to("gettoken")
    assert len(token_calls) == 1
    assert token_calls[0].query == {"corpid": "wx5823bf96d3bd56c7", "corpsecret": "secret-for-tests"}
    sends = fake_wecom.calls_to("message/send")
    assert [c.json["msgtype"] for c in sends] == ["text", "markdown"]
    assert sends[0].json["touser"] == "zhangsan|lisi" and sends[0].json["agentid"] == 218
    assert sends[0].json["text"] == {"content": "您好"}
    assert all(c.query["access_token"] == "token-1" for c in sends)


def test_token_refreshed_once_on_42001(sender, fake_wecom):
    sender.send_text(["a"], "1")
    fake_wecom.expire_token()
    r = sender.send_text(["a"], "2")
    assert r.ok
    assert len(fake_wecom.calls_to("gettoken")) == 2
    sends = fake_wecom.calls_to("message/send")
    assert [c.query["access_token"] for c in sends] == ["token-1", "token-1", "token-2"]


def test_token_still_rejected_after_refresh_is_transient(sender, fake_wecom):
    sender.send_text(["a"], "1")
    fake_wecom.fail_next(2, errcode=42001, errmsg="access_token expired")
    with pytest.raises(TransientSendError) as e:
        sender.send_text(["a"], "2")
    assert e.value.token_expired and e.value.errcode == 42001
    assert len(fake_wecom.calls_to("message/send")) == 3  # original + one retry


def test_rate_limit_is_transient(sender, fake_wecom):
    fake_wecom.fail_next(1, errcode=45009)
    with pytest.raises(TransientSendError) as e:
        sender.send_text(["a"], "x")
    assert e.value.rate_limited and e.value.errcode == 45009
    assert sender.send_text(["a"], "x").ok  # the next one goes through


def test_5xx_is_transient(sender, fake_wecom):
    sender.send_text(["a"], "warm up")
    fake_wecom.http_status_next(1, 503)
    with pytest.raises(TransientSendError) as e:
        sender.send_text(["a"], "x")
    assert e.value.http_status == 503 and not e.value.rate_limited


def test_timeout_is_transient(sender, fake_wecom):
    sender.send_text(["a"], "warm up")
    fake_wecom.delay_next(1, 2.0)
    with pytest.raises(TransientSendError) as e:
        sender.send_text(["a"], "x")
    assert e.value.timeout


def test_refused_connection_is_transient_and_not_a_timeout(fake_wecom):
    """Nothing listens: the message cannot have been accepted, so it is no timeout (a timeout
    makes the outbox keep the row's first attempt, as WeCom may have accepted it). The error
    names neither the access token nor the secret."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        sender = WeComSender(make_settings(wecom_api_base=f"http://127.0.0.1:{port}/cgi-bin/"), timeout=1.0)
        sender.client.session.set(sender.client.access_token_key, "secret-token-value", 7200)
        with pytest.raises(TransientSendError) as e:
            sender.send_text(["a"], "x")
        with pytest.raises(TransientSendError) as g:
            sender.refresh_token()
    assert not e.value.timeout and not g.value.timeout
    assert "secret-token-value" not in str(e.value) and "secret-for-tests" not in str(g.value)


def test_sender_keeps_a_requests_session_when_a_proxy_is_configured(fake_wecom, monkeypatch):
    import requests

    from platforms.http import PooledHTTP

    assert isinstance(WeComSender(make_settings(wecom_api_base=fake_wecom.base_url)).client._http, PooledHTTP)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxied = WeComSender(make_settings(wecom_api_base="https://qyapi.weixin.qq.com/cgi-bin/"))
    assert isinstance(proxied.client._http, requests.Session)
    assert proxied.client._http.proxies.get("https") == "http://127.0.0.1:9"


def test_other_errcodes_are_permanent(sender, fake_wecom):
    fake_wecom.fail_next(1, errcode=81013, errmsg="user & party & tag all invalid")
    with pytest.raises(PermanentSendError) as e:
        sender.send_text(["nobody"], "x")
    assert e.value.errcode == 81013


def test_cards_and_card_update(sender, fake_wecom):
    card = {"card_type": "button_interaction", "main_title": {"title": "群还要吗？"}, "task_id": "keep:g1:1",
            "button_list": [{"text": "保留", "key": "keep"}, {"text": "解散", "key": "dissolve"}]}
    assert sender.send_card(["zhangsan"], card).ok
    sent = fake_wecom.calls_to("message/send")[-1].json
    assert sent["msgtype"] == "template_card" and sent["template_card"] == card
    assert sender.update_card("RC-123", {"replace_name": "已保留"}, user_ids=["zhangsan"]).ok
    upd = fake_wecom.calls_to("message/update_template_card")[-1].json
    assert upd == {"agentid": 218, "response_code": "RC-123", "userids": ["zhangsan"],
                   "button": {"replace_name": "已保留"}}
    sender.update_card("RC-124", card)
    assert fake_wecom.calls_to("message/update_template_card")[-1].json["template_card"] == card


def test_appchat_lifecycle(sender, fake_wecom):
    assert sender.appchat_create("qz1", "秋粮收购专班", "zhangsan", ["zhangsan", "lisi", "wangwu"]).msgid == "qz1"
    assert fake_wecom.members("qz1") == ["zhangsan", "lisi", "wangwu"]
    sender.appchat_update("qz1", name="秋粮收购专班（已解散）", del_user_list=["lisi", "wangwu"], add_user_list=["zhaoliu"])
    info = sender.appchat_get("qz1")
    assert info["name"] == "秋粮收购专班（已解散）"
    assert info["userlist"] == ["zhangsan", "zhaoliu"]
    assert sender.appchat_send_text("qz1", "本群已解散").ok
    assert fake_wecom.calls_to("appchat/send")[-1].json == {"chatid": "qz1", "safe": 0, "msgtype": "text",
                                                             "text": {"content": "本群已解散"}}
    with pytest.raises(PermanentSendError) as e:
        sender.appchat_get("missing")
    assert e.value.errcode == 86003


def test_senders_satisfy_the_protocol(sender):
    assert isinstance(sender, Sender)
    assert isinstance(RecordingSender(), Sender)


def test_recording_sender_records_and_fails_on_demand():
    rec = RecordingSender()
    rec.send_text(["a"], "x")
    rec.appchat_create("c", "群", "a", ["a", "b"])
    rec.appchat_update("c", del_user_list=["b"])
    assert [c.method for c in rec.calls] == ["send_text", "appchat_create", "appchat_update"]
    assert rec.appchat_get("c")["userlist"] == ["a"]
    rec.fail_next(1, TransientSendError("busy", errcode=45009, rate_limited=True))
    with pytest.raises(TransientSendError):
        rec.send_text(["a"], "y")
    assert rec.send_text(["a"], "z").ok
    assert [c.args["text"] for c in rec.of("send_text")] == ["x", "y", "z"]


def test_bridge_sender_posts_signed_dissolve_instruction(fake_wecom):
    b = BridgeSender(fake_wecom.bridge_url, BRIDGE_SECRET, clock=lambda: 1_800_000_000)
    r = b.dissolve(group_id="wxg-1", instruction_id="ins-1", reason="长期无工作消息")
    assert r.ok and r.msgid == "ins-1"
    call = fake_wecom.calls_to("/bridge/inbox")[-1]
    assert call.json["type"] == "dissolve" and call.json["group_id"] == "wxg-1"
    body = json.dumps(call.json, ensure_ascii=False, separators=(",", ":")).encode()
    assert call.headers["X-Qunzhi-Timestamp"] == "1800000000"
    assert call.headers["X-Qunzhi-Signature"] == sign(BRIDGE_SECRET, "1800000000", body)
