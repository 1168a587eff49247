"""WeCom callback crypto (回调加解密), shared by the self-built app and the AI bot.

AES and the message layout come from wechatpy (``wechatpy.enterprise.crypto.PrpCrypto``); the
verification is stricter than wechatpy's:

* ``msg_signature = sha1("".join(sorted([token, timestamp, nonce, encrypt])))`` compared with
  ``hmac.compare_digest`` (wechatpy uses ``!=``);
* the timestamp must lie within ``tolerance`` seconds of the injectable clock;
* PKCS#7 padding and the length field are checked before the receive id is compared.

Nonces are *not* remembered: WeCom resends a request it got no answer to (or a 503) within its
five seconds, and a resend may carry the same query string and body, byte for byte. Refusing a
repeated nonce would lose exactly the message whose first attempt was not stored. The replay
defence is the durable dedupe (``processed_events``, by ``MsgId`` / ``FromUserName + CreateTime``
/ the AI bot's ``msgid``): a repeat of a stored request changes nothing and is answered as the
original was; a repeat of one never stored is processed. The timestamp window bounds how long a
captured request can be repeated at all.

Outcomes, mapped to HTTP by the adapters:

* ``Forbidden`` (403): missing or forged signature, stale timestamp, and a
  receive id that is not ours (the message was encrypted for another corp or bot, so it is
  not addressed to us even though it decrypts);
* ``Malformed`` (400): the signature is right but the ciphertext is not base64, not a whole
  number of AES blocks, has bad padding or an impossible length field.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from datetime import datetime
from typing import Callable

from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto

class CallbackError(Exception):
    status = 400

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Forbidden(CallbackError):
    status = 403


class Malformed(CallbackError):
    status = 400


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypt])).encode()).hexdigest()


class _PrpCrypto(PrpCrypto):
    """wechatpy's message layout and AES, built once per key (its cipher object is reusable) and
    with a random prefix from ``secrets`` (16 hex characters) instead of ``random.sample``."""

    def get_random_string(self) -> str:
        return secrets.token_hex(8)


class CallbackCrypto:
    """Verify, decrypt and encrypt WeCom callbacks for one receive id (CorpID, or "" for the AI bot)."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str, *, tolerance: int,
                 clock: Callable[[], datetime]):
        self.token = token
        self.receive_id = receive_id
        self.tolerance = tolerance
        self.clock = clock
        self._wechat = WeChatCrypto(token, encoding_aes_key, receive_id)
        self.key = self._wechat.key
        self._prp = _PrpCrypto(self.key)

    # --- verification ------------------------------------------------------------------
    def verify(self, msg_signature: str | None, timestamp: str | None, nonce: str | None,
               encrypt: str | None) -> None:
        if not (msg_signature and timestamp and nonce and encrypt):
            raise Forbidden("missing msg_signature, timestamp, nonce or ciphertext")
        if not timestamp.isdigit() or len(timestamp) > 12:
            raise Forbidden("timestamp is not a unix time")
        expected = signature(self.token, timestamp, nonce, encrypt)
        if not hmac.compare_digest(expected.encode(), msg_signature.strip().lower().encode()):
            raise Forbidden("bad msg_signature")
        now = self.clock().timestamp()
        if abs(now - int(timestamp)) > self.tolerance:
            raise Forbidden("timestamp outside the accepted window")

    # --- AES -----------------------------------------------------------------------------
    def decrypt(self, encrypt: str) -> str:
        try:
            raw = base64.b64decode(encrypt, validate=True)
        except (binascii.Error, ValueError):
            raise Malformed("ciphertext is not base64") from None
        if not raw or len(raw) % 16:
            raise Malformed("ciphertext is not a whole number of AES blocks")
        plain = self._prp.cipher.decrypt(raw)
        pad = plain[-1]
        if not 1 <= pad <= 32 or plain[-pad:] != bytes([pad]) * pad:
            raise Malformed("bad PKCS#7 padding")
        content = plain[16:-pad]
        if len(content) < 4:
            raise Malformed("plaintext too short")
        (length,) = struct.unpack("!I", content[:4])
        if length > len(content) - 4:
            raise Malformed("length field larger than the plaintext")
        message, from_id = content[4:4 + length], content[4 + length:]
        try:
            from_id_text = from_id.decode()
            text = message.decode()
        except UnicodeDecodeError:
            raise Malformed("plaintext is not UTF-8") from None
        if not hmac.compare_digest(from_id_text.encode(), self.receive_id.encode()):
            raise Forbidden("receive id does not match")
        return text

    def verify_and_decrypt(self, msg_signature: str | None, timestamp: str | None, nonce: str | None,
                           encrypt: str | None) -> str:
        self.verify(msg_signature, timestamp, nonce, encrypt)
        return self.decrypt(encrypt or "")

    def encrypt(self, plaintext: str) -> str:
        return self._prp.encrypt(plaintext, self.receive_id).decode()

    def encrypt_xml(self, reply_xml: str, nonce: str, timestamp: str) -> str:
        """The encrypted XML envelope of a passive reply (self-built app)."""
        return self._wechat.encrypt_message(reply_xml, nonce, timestamp)

    def encrypt_json(self, plaintext: str, nonce: str, timestamp: str) -> dict[str, str]:
        """The encrypted JSON envelope of a passive reply (AI bot), as Tencent's WXBizJsonMsgCrypt
        builds it: ``{"encrypt", "msgsignature", "timestamp", "nonce"}``."""
        enc = self.encrypt(plaintext)
        return {"encrypt": enc, "msgsignature": signature(self.token, timestamp, nonce, enc),
                "timestamp": timestamp, "nonce": nonce}


def encrypt_for_tests(token: str, encoding_aes_key: str, receive_id: str, plaintext: str,
                      timestamp: str, nonce: str) -> tuple[str, str]:
    """Encrypt the way WeCom does; returns (encrypt, msg_signature). Used by tests and the demo."""
    key = base64.b64decode(encoding_aes_key + "=")
    enc = PrpCrypto(key).encrypt(plaintext, receive_id).decode()
    return enc, signature(token, timestamp, nonce, enc)


def app_state_crypto(app, name: str, token: str, encoding_aes_key: str, receive_id: str, *, tolerance: int,
                     clock: Callable[[], datetime]) -> CallbackCrypto:
    """One ``CallbackCrypto`` per application and callback, built on first use and again only if
    the settings it was built from change."""
    key = (token, encoding_aes_key, receive_id, tolerance, clock)
    cached = getattr(app.state, name + "_crypto", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    crypto = CallbackCrypto(token, encoding_aes_key, receive_id, tolerance=tolerance, clock=clock)
    setattr(app.state, name + "_crypto", (key, crypto))
    return crypto


__all__ = ["CallbackCrypto", "CallbackError", "Forbidden", "Malformed", "signature", "encrypt_for_tests",
           "app_state_crypto"]
