"""Build requests the way WeCom, the AI bot and a bridge send them (encrypted / signed for real)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import func, select
from wechatpy.enterprise.crypto import WeChatCrypto

from platforms.bridge.inbound import signed_headers
from platforms.wecom.crypto import encrypt_for_tests
from tests.conftest import (AIBOT_AES_KEY, AIBOT_TOKEN, BRIDGE_SECRET, WECOM_AES_KEY, WECOM_CORP_ID,
                            WECOM_TOKEN)

# Tencent's official sample (shared/docs/wecom.md)
GET_SIGNATURE = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
GET_TIMESTAMP = "1409659589"
GET_NONCE = "263014780"
GET_ECHOSTR = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
GET_ANSWER = "1616140317555161061"
POST_SIGNATURE = "477715d11cdb4164915debcba66cb864d751f3e6"
POST_TIMESTAMP = "1409659813"
POST_NONCE = "1372623149"
POST_ENCRYPT = ("RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3"
                "vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHz"
                "M6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbS"
                "f6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCm"
                "JU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==")
POST_MSGID = "4561255354251345929"


def envelope(encrypt: str, to: str = WECOM_CORP_ID, agent: str = "218") -> str:
    return (f"<xml><ToUserName><![CDATA[{to}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt>"
            f"<AgentID><![CDATA[{agent}]]></AgentID></xml>")


def text_xml(sender: str, content: str, created: int, msg_id: str, to: str = WECOM_CORP_ID) -> str:
    return (f"<xml><ToUserName><![CDATA[{to}]]></ToUserName><FromUserName><![CDATA[{sender}]]></FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId><AgentID>218</AgentID></xml>")


def card_event_xml(sender: str, created: int, *, task_id: str, event_key: str, response_code: str = "RC1",
                   card_type: str = "vote_interaction", options: tuple[str, ...] = ("keep",)) -> str:
    opts = "".join(f"<OptionId><![CDATA[{o}]]></OptionId>" for o in options)
    return (f"<xml><ToUserName><![CDATA[{WECOM_CORP_ID}]]></ToUserName>"
            f"<FromUserName><![CDATA[{sender}]]></FromUserName><CreateTime>{created}</CreateTime>"
            f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[template_card_event]]></Event>"
            f"<EventKey><![CDATA[{event_key}]]></EventKey><TaskId><![CDATA[{task_id}]]></TaskId>"
            f"<CardType><![CDATA[{card_type}]]></CardType><ResponseCode><![CDATA[{response_code}]]></ResponseCode>"
            f"<AgentID>218</AgentID><SelectedItems><SelectedItem><QuestionKey><![CDATA[q1]]></QuestionKey>"
            f"<OptionIds>{opts}</OptionIds></SelectedItem></SelectedItems></xml>")


class WeComSim:
    """Sends what WeCom sends: encrypts with wechatpy's crypto and signs; a fresh nonce each time."""

    def __init__(self, client, clock, receive_id: str = WECOM_CORP_ID):
        self.client = client
        self.clock = clock
        self.receive_id = receive_id
        self._nonce = 1000

    def nonce(self) -> str:
        self._nonce += 1
        return str(self._nonce)

    def post_plain(self, plaintext: str, *, nonce: str | None = None, timestamp: str | None = None,
                   receive_id: str | None = None, signature: str | None = None):
        ts = timestamp or str(int(self.clock().timestamp()))
        n = nonce or self.nonce()
        enc, sig = encrypt_for_tests(WECOM_TOKEN, WECOM_AES_KEY, receive_id if receive_id is not None
                                     else self.receive_id, plaintext, ts, n)
        return self.client.post("/wecom/callback", params={"msg_signature": signature or sig, "timestamp": ts,
                                                           "nonce": n}, content=envelope(enc),
                                headers={"Content-Type": "text/xml"})

    def say(self, sender: str, text: str, msg_id: str):
        created = int(self.clock().timestamp())
        return self.post_plain(text_xml(sender, text, created, msg_id))


def decrypt_xml_reply(body: str) -> str:
    """Decrypt an encrypted passive reply the way WeCom does (wechatpy)."""
    from xml.etree.ElementTree import fromstring

    root = fromstring(body)
    crypto = WeChatCrypto(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORP_ID)
    return crypto.decrypt_message(body, root.findtext("MsgSignature"), root.findtext("TimeStamp"),
                                  root.findtext("Nonce"))


def aibot_post(client, clock, data: dict, *, nonce: str, timestamp: str | None = None, signature: str | None = None):
    ts = timestamp or str(int(clock().timestamp()))
    enc, sig = encrypt_for_tests(AIBOT_TOKEN, AIBOT_AES_KEY, "", json.dumps(data, ensure_ascii=False), ts, nonce)
    return client.post("/wecom/aibot/callback", params={"msg_signature": signature or sig, "timestamp": ts,
                                                        "nonce": nonce}, json={"encrypt": enc})


def bridge_post(client, clock, event: dict | bytes, *, secret: str = BRIDGE_SECRET, timestamp: int | None = None):
    body = event if isinstance(event, bytes) else json.dumps(event, ensure_ascii=False).encode()
    ts = timestamp if timestamp is not None else int(clock().timestamp())
    return client.post("/bridge/events", content=body, headers=signed_headers(secret, ts, body))


def count(db, model, *where) -> int:
    with db.session() as s:
        return s.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def at_2014(clock, ts: str = POST_TIMESTAMP) -> None:
    clock.set(datetime.fromtimestamp(int(ts), tz=timezone.utc))
