"""Feishu callback crypto on fixed vectors: Feishu's documented example, our encryptor checked by
the SDK's decryptor (the SDK has no encryptor), and the signature as Feishu computes it."""
from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone

import pytest
from lark_oapi.core.utils.decryptor import AESCipher

from platforms.feishu.crypto import FeishuCallback, encrypt_for_tests, signature
from platforms.wecom.crypto import Forbidden, Malformed

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)


def _cb(**kw) -> FeishuCallback:
    return FeishuCallback("test key", "vtoken", tolerance=300, clock=lambda: NOW, **kw)


def test_feishu_documented_vector():
    """Feishu's documentation: Encrypt Key ``test key`` decrypts this ciphertext to ``hello world``."""
    ct = "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="
    assert AESCipher("test key").decrypt_str(ct) == "hello world"
    assert _cb().decrypt(ct) == "hello world"


def test_our_encryptor_on_a_fixed_iv_is_read_by_the_sdk():
    iv = bytes(range(16))
    ct = encrypt_for_tests("test key", '{"challenge":"abc"}', iv=iv)
    raw = base64.b64decode(ct)
    assert raw[:16] == iv and len(raw) == 16 + 32  # the IV, then 19 bytes padded to two blocks
    assert AESCipher("test key").decrypt_str(ct) == '{"challenge":"abc"}'
    # key = SHA-256 of the Encrypt Key, as Feishu documents
    assert AESCipher("test key").digest == hashlib.sha256(b"test key").digest()
    # a fixed vector of ours (AES-256-CBC, key SHA-256("test key"), IV 00..0f), so a change shows
    assert ct == "AAECAwQFBgcICQoLDA0OD6alpwIsMFbSsWTHppjb1mEbsoR02u7satqjGlhBepBb"


@pytest.mark.parametrize("text", ["", "x", "a" * 15, "a" * 16, "a" * 17, "中文消息" * 50])
def test_roundtrip_with_the_sdk_decryptor(text):
    ct = encrypt_for_tests("another key", text)
    assert AESCipher("another key").decrypt_str(ct) == text
    assert FeishuCallback("another key", "t", tolerance=300, clock=lambda: NOW).decrypt(ct) == text


def test_signature_is_sha256_of_timestamp_nonce_key_body():
    body = b'{"encrypt":"abc"}'
    expected = hashlib.sha256(b"1700000000" + b"nonce" + b"test key" + body).hexdigest()
    assert signature("1700000000", "nonce", "test key", body) == expected


def test_bad_ciphertexts_are_malformed():
    cb = _cb()
    with pytest.raises(Malformed):
        cb.decrypt("not base64!!")
    with pytest.raises(Malformed):
        cb.decrypt(base64.b64encode(b"short").decode())
    with pytest.raises(Malformed):  # wrong key: the padding does not check out (or not UTF-8)
        cb.decrypt(encrypt_for_tests("other key", "hello world" * 3))


def _signed(body: bytes, ts: int, key="test key"):
    return {"x-lark-request-timestamp": str(ts), "x-lark-request-nonce": "n1",
            "x-lark-signature": signature(str(ts), "n1", key, body)}


def _event_body(token="vtoken") -> bytes:
    plain = json.dumps({"schema": "2.0", "header": {"event_id": "e1", "event_type": "x", "token": token}, "event": {}})
    return json.dumps({"encrypt": encrypt_for_tests("test key", plain)}).encode()


def test_open_verifies_before_it_decrypts():
    cb = _cb()
    body = _event_body()
    ts = int(NOW.timestamp())
    assert cb.open(_signed(body, ts), body)["header"]["event_id"] == "e1"
    with pytest.raises(Forbidden, match="bad X-Lark-Signature"):
        cb.open(_signed(body, ts, key="wrong"), body)
    with pytest.raises(Forbidden, match="window"):
        cb.open(_signed(body, ts - 301), body)
    with pytest.raises(Forbidden, match="unsigned"):
        cb.open({}, body)
    with pytest.raises(Forbidden, match="verification token"):
        bad = _event_body(token="other")
        cb.open(_signed(bad, ts), bad)
    plain = json.dumps({"header": {"token": "vtoken"}}).encode()
    with pytest.raises(Forbidden, match="not encrypted"):
        cb.open(_signed(plain, ts), plain)
