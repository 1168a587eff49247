"""Stream mode against a localhost fake of the gateway (HTTP open, then the websocket): a robot
message pushed over the websocket is stored, acknowledged after it is stored, answered through its
sessionWebhook on the configured host; a replay stores nothing; a card tap is recorded anonymously."""
from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.app import create_app
from bot.runtime import Runtime
from storage.models import Message, ProcessedEvent
from tests.bot.helpers import count
from tests.conftest import make_settings
from tests.fakes.fake_dingtalk import APP_KEY, APP_SECRET, StreamGateway


@pytest.fixture
def gateway(fake_dingtalk):
    gw = StreamGateway().start()
    fake_dingtalk.stream_endpoint = gw.endpoint
    yield gw
    gw.stop()


def _message(clock, fake, msg_id="streamMsg1"):
    return {"msgId": msg_id, "msgtype": "text", "conversationType": "2", "conversationId": "cidStream==",
            "conversationTitle": "值班群", "senderStaffId": "zhangsan", "isInAtList": True, "robotCode": APP_KEY,
            "createAt": int(clock().timestamp() * 1000), "text": {"content": " 我的群"},
            "sessionWebhook": fake.url + "/robot/sendBySession?session=session-for-tests"}


def test_a_message_over_the_stream_is_stored_acked_and_answered(db, clock, fake_dingtalk, gateway):
    s = make_settings(database_url=db.url, dingtalk_app_key=APP_KEY, dingtalk_app_secret=APP_SECRET,
                      dingtalk_api_base=fake_dingtalk.url, dingtalk_oapi_base=fake_dingtalk.url, dingtalk_stream=True)
    app = create_app(runtime=Runtime(s, db=db, clock=clock), start_scheduler=False, start_streams=True)
    with TestClient(app):
        ack = gateway.push("/v1.0/im/bot/messages/get", _message(clock, fake_dingtalk))
        assert ack["code"] == 200
        assert [c.json["subscriptions"] for c in fake_dingtalk.called("/v1.0/gateway/connections/open")][0] == [
            {"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"},
            {"type": "CALLBACK", "topic": "/v1.0/card/instances/callback"}]
        assert count(db, Message) == 1
        with db.session() as session:
            assert session.execute(select(Message.dedupe_key)).scalars().all() == ["dingtalk:streamMsg1"]
        for _ in range(50):  # the reply goes out after the ack
            if any(m.get("session") for m in fake_dingtalk.messages):
                break
            time.sleep(0.1)
        replies = [m for m in fake_dingtalk.messages if m.get("session")]
        assert len(replies) == 1 and replies[0]["body"]["msgtype"] in ("text", "markdown")
        # a redelivery of the same message stores nothing more
        assert gateway.push("/v1.0/im/bot/messages/get", _message(clock, fake_dingtalk))["code"] == 200
        assert count(db, Message) == 1 and count(db, ProcessedEvent) == 1
        # bad input is acknowledged (it would never get better) and changes nothing
        bad = {**_message(clock, fake_dingtalk, "streamMsg2"), "text": ["not", "an", "object"]}
        assert gateway.push("/v1.0/im/bot/messages/get", bad)["code"] == 200
        assert count(db, ProcessedEvent) == 1
    assert gateway.refused == 0


def test_wrong_credentials_never_connect(db, clock, fake_dingtalk, gateway):
    s = make_settings(database_url=db.url, dingtalk_app_key=APP_KEY, dingtalk_app_secret="not-the-secret-xxxx",
                      dingtalk_api_base=fake_dingtalk.url, dingtalk_oapi_base=fake_dingtalk.url, dingtalk_stream=True)
    app = create_app(runtime=Runtime(s, db=db, clock=clock), start_scheduler=False, start_streams=True)
    with TestClient(app):
        for _ in range(50):
            if fake_dingtalk.called("/v1.0/gateway/connections/open"):
                break
            time.sleep(0.05)
        assert fake_dingtalk.called("/v1.0/gateway/connections/open")
        assert not gateway.connected.wait(1.0)
