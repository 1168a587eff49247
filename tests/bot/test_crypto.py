"""The callback crypto on its own: fixed vectors, padding, receive id, nonce cache."""
from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from xml.etree.ElementTree import fromstring

import pytest
from wechatpy.enterprise.crypto import PrpCrypto

from platforms.wecom.crypto import CallbackCrypto, Forbidden, Malformed, signature
from platforms.wecom.inbound import to_event
from tests.bot.helpers import (GET_ANSWER, GET_ECHOSTR, GET_NONCE, GET_SIGNATURE, GET_TIMESTAMP, POST_ENCRYPT,
                               POST_NONCE, POST_SIGNATURE, POST_TIMESTAMP, card_event_xml)
from tests.conftest import WECOM_AES_KEY, WECOM_CORP_ID, WECOM_TOKEN

T2014 = datetime.fromtimestamp(int(POST_TIMESTAMP), tz=timezone.utc)


def _crypto(receive_id=WECOM_CORP_ID, now=T2014):
    return CallbackCrypto(WECOM_TOKEN, WECOM_AES_KEY, receive_id, tolerance=300, clock=lambda: now)


def test_official_vectors():
    assert signature(WECOM_TOKEN, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT) == POST_SIGNATURE
    assert _crypto().verify_and_decrypt(GET_SIGNATURE, GET_TIMESTAMP, GET_NONCE, GET_ECHOSTR) == GET_ANSWER
    xml = _crypto().verify_and_decrypt(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT)
    e = to_event(fromstring(xml), T2014)
    assert (e.platform, e.kind, e.sender_id, e.text, e.msg_id, e.group_id) == (
        "wecom", "message", "mycreate", "hello", "4561255354251345929", None)
    assert e.data["agent_id"] == "218"
    assert e.at.tzinfo is not None and e.at.utcoffset().total_seconds() == 0


def test_signature_is_case_insensitive_hex_but_exact():
    c = _crypto()
    c.verify(POST_SIGNATURE.upper(), POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT)
    with pytest.raises(Forbidden):
        _crypto().verify(POST_SIGNATURE[:-1] + "0", POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT)


def test_non_numeric_timestamp_is_forbidden():
    with pytest.raises(Forbidden):
        _crypto().verify(POST_SIGNATURE, "14e8", POST_NONCE, POST_ENCRYPT)


def test_bad_padding_is_malformed():
    c = _crypto()
    key = base64.b64decode(WECOM_AES_KEY + "=")
    raw = b"0" * 16 + (5).to_bytes(4, "big") + b"hello" + WECOM_CORP_ID.encode()
    raw += bytes([0]) * (32 - len(raw) % 32)  # padding byte 0: invalid PKCS#7
    enc = base64.b64encode(PrpCrypto(key).cipher.encrypt(raw)).decode()
    with pytest.raises(Malformed):
        c.decrypt(enc)


def test_length_field_too_large_is_malformed():
    key = base64.b64decode(WECOM_AES_KEY + "=")
    body = b"0" * 16 + (9999).to_bytes(4, "big") + b"hello"
    pad = 32 - len(body) % 32
    enc = base64.b64encode(PrpCrypto(key).cipher.encrypt(body + bytes([pad]) * pad)).decode()
    with pytest.raises(Malformed):
        _crypto().decrypt(enc)


def test_wrong_receive_id_is_forbidden():
    enc = PrpCrypto(base64.b64decode(WECOM_AES_KEY + "=")).encrypt("<xml/>", "wwOTHER").decode()
    with pytest.raises(Forbidden):
        _crypto().decrypt(enc)
    assert _crypto(receive_id="wwOTHER").decrypt(enc) == "<xml/>"


def test_a_repeated_request_verifies_again_within_the_window():
    """WeCom resends a request byte for byte: verification does not remember nonces (the durable
    dedupe is the replay defence); only the timestamp window limits repeats."""
    c = _crypto()
    for _ in range(3):
        assert "mycreate" in c.verify_and_decrypt(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT)
    late = CallbackCrypto(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORP_ID, tolerance=300,
                          clock=lambda: T2014 + timedelta(minutes=6))
    with pytest.raises(Forbidden):
        late.verify(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT)


def test_card_event_parsing():
    xml = card_event_xml("zhangsan", 1_800_000_000, task_id="keep:g1:7", event_key="btn_keep",
                         response_code="RC9", options=("o1", "o2"))
    e = to_event(fromstring(xml), T2014)
    assert e.kind == "card_click" and e.msg_id == "evt:zhangsan:1800000000:template_card_event"
    assert e.data == {"agent_id": "218", "event_key": "btn_keep", "task_id": "keep:g1:7",
                      "card_type": "vote_interaction", "response_code": "RC9",
                      "selected": [{"question_key": "q1", "option_ids": ["o1", "o2"]}], "card_kind": "keep"}
    # without a task id the kind comes from the event key
    xml2 = card_event_xml("zhangsan", 1_800_000_001, task_id="", event_key="pulse:3")
    assert to_event(fromstring(xml2), T2014).data["card_kind"] == "pulse"
