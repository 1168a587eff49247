"""Feishu / Lark event-callback crypto (事件订阅 加密与签名校验).

With an Encrypt Key set in the developer console, Feishu POSTs ``{"encrypt": base64(iv16 +
AES-256-CBC(PKCS#7(json)))}`` with key = SHA-256(Encrypt Key), and signs every event with the
headers ``X-Lark-Request-Timestamp``, ``X-Lark-Request-Nonce`` and ``X-Lark-Signature`` =
hex SHA-256(timestamp + nonce + Encrypt Key + raw body).

* Decryption is the SDK's (``lark_oapi.core.utils.decryptor.AESCipher``: key derivation, IV,
  CBC, PKCS#7 checks). Importing ``lark_oapi`` costs ~2.5 s and ~110 MB (it imports every API
  module), so it is imported on first use, or ahead in a background thread (``warm_up``, called
  by ``qunzhi serve`` through the platform's start-up line when Feishu is configured), so the
  ``url_verification`` challenge is answered within Feishu's 1 s.
* The signature check is ours, stricter than the SDK's ``EventDispatcherHandler._verify_sign``:
  ``hmac.compare_digest`` (the SDK uses ``!=``) and a timestamp window
  (``QUNZHI_WECOM_TIMESTAMP_TOLERANCE``, as every platform); the Verification Token inside the
  event is compared in constant time too.
* Nonces are not remembered (Feishu retries an event it got no 200 for, with the same
  ``event_id``): the durable dedupe by ``event_id`` is the replay defence, as for WeCom.

Outcomes (``platforms.wecom.crypto``'s types, mapped to HTTP by the adapter): ``Forbidden``
(403) missing/forged signature, stale timestamp, wrong token, an unencrypted body; ``Malformed``
(400) a body or ciphertext that is not what Feishu sends.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
from datetime import datetime
from typing import Any, Callable

from platforms.common import json_object
from platforms.wecom.crypto import Forbidden, Malformed

TIMESTAMP = "x-lark-request-timestamp"   # lark_oapi.core.const.LARK_REQUEST_TIMESTAMP, lower-cased
NONCE = "x-lark-request-nonce"           # LARK_REQUEST_NONCE
SIGNATURE = "x-lark-signature"           # LARK_REQUEST_SIGNATURE

_warm = threading.Lock()
_warming: threading.Thread | None = None


def _cipher_class():
    from lark_oapi.core.utils.decryptor import AESCipher

    return AESCipher


def warm_up() -> None:
    """Import the SDK in the background (once per process), so the first callback does not wait."""
    global _warming
    with _warm:
        if _warming is None:
            _warming = threading.Thread(target=_cipher_class, name="lark-oapi-import", daemon=True)
            _warming.start()


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


class FeishuCallback:
    """Verify and open Feishu callbacks for one app (Encrypt Key, Verification Token)."""

    def __init__(self, encrypt_key: str, verification_token: str, *, tolerance: int,
                 clock: Callable[[], datetime]):
        self.encrypt_key = encrypt_key
        self.verification_token = verification_token
        self.tolerance = tolerance
        self.clock = clock
        self._cipher = _cipher_class()(encrypt_key)

    def signed(self, headers: dict[str, str]) -> bool:
        return bool(headers.get(SIGNATURE))

    def verify(self, headers: dict[str, str], body: bytes) -> None:
        ts, nonce, sig = headers.get(TIMESTAMP) or "", headers.get(NONCE) or "", headers.get(SIGNATURE) or ""
        if not (ts and nonce and sig):
            raise Forbidden("missing X-Lark-Request-Timestamp, X-Lark-Request-Nonce or X-Lark-Signature")
        if not ts.isdigit() or len(ts) > 12:
            raise Forbidden("X-Lark-Request-Timestamp is not a unix time")
        expected = signature(ts, nonce, self.encrypt_key, body)
        if not hmac.compare_digest(expected.encode(), sig.strip().lower().encode()):
            raise Forbidden("bad X-Lark-Signature")
        if abs(self.clock().timestamp() - int(ts)) > self.tolerance:
            raise Forbidden("X-Lark-Request-Timestamp outside the accepted window")

    def decrypt(self, encrypt: str) -> str:
        try:
            raw = base64.b64decode(encrypt, validate=True)
        except (binascii.Error, ValueError):
            raise Malformed("ciphertext is not base64") from None
        try:
            plain = self._cipher.decrypt(raw)
        except ValueError as e:  # the SDK's length / padding checks
            raise Malformed(f"ciphertext refused: {e}") from None
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed("plaintext is not UTF-8") from None

    def check_token(self, token: Any) -> None:
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.verification_token.encode()):
            raise Forbidden("verification token does not match")

    def open(self, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """The decrypted callback JSON. A signed request is verified before anything is
        decrypted; an unsigned one is accepted only as the ``url_verification`` handshake (which
        Feishu does not sign) with our token. The token of an event is checked here too."""
        signed = self.signed(headers)
        if signed:
            self.verify(headers, body)
        envelope = json_object(body)
        encrypt = envelope.get("encrypt")
        if not isinstance(encrypt, str) or not encrypt:
            raise Forbidden("callback is not encrypted (set the Encrypt Key in the developer console)")
        data = json_object(self.decrypt(encrypt))
        header = data.get("header")
        token = header.get("token") if isinstance(header, dict) else data.get("token")
        self.check_token(token)
        if not signed and data.get("type") != "url_verification":
            raise Forbidden("unsigned callback")
        return data




def encrypt_for_tests(encrypt_key: str, plaintext: str, iv: bytes | None = None) -> str:
    """Encrypt as Feishu does (the SDK has no encryptor): base64(iv + AES-256-CBC(PKCS#7)).
    Used by tests, the fake and the demo; checked against the SDK's decryptor."""
    import secrets

    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    iv = iv if iv is not None else secrets.token_bytes(16)
    key = hashlib.sha256(encrypt_key.encode()).digest()
    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext.encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + enc.update(data) + enc.finalize()).decode()


def app_state_callback(app, encrypt_key: str, verification_token: str, *, tolerance: int,
                       clock: Callable[[], datetime]) -> FeishuCallback:
    """One ``FeishuCallback`` per application, rebuilt only when its settings change."""
    key = (encrypt_key, verification_token, tolerance, clock)
    cached = getattr(app.state, "feishu_crypto", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    cb = FeishuCallback(encrypt_key, verification_token, tolerance=tolerance, clock=clock)
    app.state.feishu_crypto = (key, cb)
    return cb
