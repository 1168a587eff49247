"""Hostile callback input not covered in tests/bot: deep nesting, huge streamed bodies, invalid
UTF-8, wrong AES padding and wrong receive id over HTTP (AI bot too), hostile JSON. Every one
is refused with 400/403/413 and nothing is stored."""
from __future__ import annotations

import base64
import json
import struct

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from wechatpy.enterprise.crypto import PrpCrypto

from platforms.bridge.inbound import signed_headers
from platforms.wecom.crypto import encrypt_for_tests, signature
from storage.models import Group, Membership, Message, OutboxMessage, Person, ProcessedEvent
from tests.bot.helpers import envelope
from tests.conftest import (AIBOT_AES_KEY, AIBOT_TOKEN, BRIDGE_SECRET, WECOM_AES_KEY, WECOM_CORP_ID,
                            WECOM_TOKEN)

MODELS = (Message, ProcessedEvent, Person, Group, Membership, OutboxMessage)


@pytest.fixture
def hclient(runtime):
    from bot.app import create_app

    with TestClient(create_app(runtime=runtime, start_scheduler=False), raise_server_exceptions=False) as c:
        yield c


def nothing_stored(db) -> bool:
    with db.session() as s:
        return all(s.execute(select(func.count()).select_from(m)).scalar_one() == 0 for m in MODELS)


def _ts(clock) -> str:
    return str(int(clock().timestamp()))


def _raw_encrypt(aes_key: str, payload: bytes) -> str:
    """AES-CBC over exactly ``payload`` (caller controls padding and layout)."""
    key = base64.b64decode(aes_key + "=")
    return base64.b64encode(PrpCrypto(key).cipher.encrypt(payload)).decode()


def _layout(message: bytes, receive_id: bytes) -> bytes:
    return b"0123456789abcdef" + struct.pack("!I", len(message)) + message + receive_id


def _pkcs7(b: bytes) -> bytes:
    pad = 32 - len(b) % 32
    return b + bytes([pad]) * pad


def post_wecom(client, clock, enc: str, nonce: str, body: str | None = None):
    ts = _ts(clock)
    return client.post("/wecom/callback", params={"msg_signature": signature(WECOM_TOKEN, ts, nonce, enc),
                                                  "timestamp": ts, "nonce": nonce},
                       content=body if body is not None else envelope(enc))


def post_aibot(client, clock, enc: str, nonce: str):
    ts = _ts(clock)
    return client.post("/wecom/aibot/callback", params={"msg_signature": signature(AIBOT_TOKEN, ts, nonce, enc),
                                                        "timestamp": ts, "nonce": nonce}, json={"encrypt": enc})


GOOD_XML = ("<xml><ToUserName>wx5823bf96d3bd56c7</ToUserName><FromUserName>zhangsan</FromUserName>"
            "<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>帮助</Content><MsgId>1</MsgId></xml>")


@pytest.mark.parametrize("padding", ["zero", "too-large", "inconsistent"])
def test_wrong_aes_padding_over_http_is_400(hclient, clock, db, padding):
    plain = _layout(GOOD_XML.encode(), WECOM_CORP_ID.encode())
    padded = _pkcs7(plain)
    n = padded[-1]
    if padding == "zero":
        padded = padded[:-1] + b"\x00"
    elif padding == "too-large":
        padded = padded[:-1] + b"\x21"
    else:
        padded = padded[:-n] + bytes([n]) * (n - 1) + bytes([(n % 31) + 1]) if n > 1 else padded[:-1] + b"\x05"
    r = post_wecom(hclient, clock, _raw_encrypt(WECOM_AES_KEY, padded), "pad-" + padding)
    assert r.status_code == 400
    assert nothing_stored(db)


def test_invalid_utf8_inside_the_ciphertext_is_400(hclient, clock, db):
    bad = GOOD_XML.encode().replace("帮助".encode(), b"\xff\xfe\xc3")
    enc = _raw_encrypt(WECOM_AES_KEY, _pkcs7(_layout(bad, WECOM_CORP_ID.encode())))
    assert post_wecom(hclient, clock, enc, "utf8-1").status_code == 400
    enc = _raw_encrypt(AIBOT_AES_KEY, _pkcs7(_layout(b'{"msgid": "\xff\xfe"}', b"")))
    assert post_aibot(hclient, clock, enc, "utf8-2").status_code == 400
    assert nothing_stored(db)


def test_invalid_utf8_envelope_is_400(hclient, clock, db):
    enc, _ = encrypt_for_tests(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORP_ID, GOOD_XML, _ts(clock), "e1")
    body = b"<xml><ToUserName>\xff\xfe</ToUserName><Encrypt><![CDATA[" + enc.encode() + b"]]></Encrypt></xml>"
    assert post_wecom(hclient, clock, enc, "e1", body=body).status_code in (400, 403)
    r = hclient.post("/wecom/aibot/callback", params={"msg_signature": "0" * 40, "timestamp": _ts(clock),
                                                      "nonce": "e2"}, content=b'{"encrypt": "\xff\xfe"}')
    assert r.status_code in (400, 403)
    assert nothing_stored(db)


def test_wrong_receive_id_on_the_ai_bot_is_403(hclient, clock, db):
    data = json.dumps({"msgid": "R1", "chattype": "group", "chatid": "c1", "from": {"userid": "u"},
                       "msgtype": "text", "text": {"content": "@bot 帮助"}})
    enc, _ = encrypt_for_tests(AIBOT_TOKEN, AIBOT_AES_KEY, WECOM_CORP_ID, data, _ts(clock), "rid")
    assert post_aibot(hclient, clock, enc, "rid").status_code == 403
    assert nothing_stored(db)


DEPTH = 20_000


@pytest.mark.parametrize("where", ["envelope", "ciphertext"])
def test_deeply_nested_xml_is_refused(hclient, clock, db, where):
    deep = "<a>" * DEPTH + "</a>" * DEPTH
    if where == "envelope":
        enc, _ = encrypt_for_tests(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORP_ID, GOOD_XML, _ts(clock), "d1")
        body = f"<xml>{deep}<Encrypt><![CDATA[{enc}]]></Encrypt></xml>"
        r = post_wecom(hclient, clock, enc, "d1", body=body)
    else:
        plain = f"<xml><FromUserName>zhangsan</FromUserName><MsgType>text</MsgType><Content>{deep}</Content></xml>"
        enc, _ = encrypt_for_tests(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORP_ID, plain, _ts(clock), "d2")
        r = post_wecom(hclient, clock, enc, "d2")
    assert r.status_code in (400, 403, 413)  # never 500, never stored
    assert nothing_stored(db)


def test_deeply_nested_json_is_400_not_500(hclient, clock, db):
    deep = "[" * DEPTH + "]" * DEPTH
    r = hclient.post("/wecom/aibot/callback", params={"msg_signature": "0" * 40, "timestamp": _ts(clock),
                                                      "nonce": "j1"}, content=deep)
    assert r.status_code == 400
    # correctly encrypted and signed, the plaintext is the deep JSON
    enc, _ = encrypt_for_tests(AIBOT_TOKEN, AIBOT_AES_KEY, "", '{"a":' + deep + "}", _ts(clock), "j2")
    assert post_aibot(hclient, clock, enc, "j2").status_code == 400
    body = ('{"id":"x","type":"message","group_id":"g","sender_id":"u","at":"2026-11-23T10:00:00+08:00","data":'
            + deep + "}").encode()
    r = hclient.post("/bridge/events", content=body, headers=signed_headers(BRIDGE_SECRET, _ts(clock), body))
    assert r.status_code in (400, 413)
    assert nothing_stored(db)


def test_huge_streamed_body_without_length_is_413(hclient, clock, db, settings):
    """A chunked body (no Content-Length) larger than the limit is cut off with 413."""
    chunk = b"<xml>" + b" " * 8192

    def gen():
        for _ in range(settings.max_body_bytes // 8192 + 4):
            yield chunk

    for path in ("/wecom/callback", "/wecom/aibot/callback", "/bridge/events"):
        r = hclient.post(path, params={"msg_signature": "0" * 40, "timestamp": _ts(clock), "nonce": "h" + path},
                         content=gen())
        assert r.status_code == 413, path
    assert nothing_stored(db)
