"""Feishu test helpers: settings with the app configured, and callbacks built as Feishu builds them
(encrypted with the Encrypt Key, signed with X-Lark-Signature)."""
from __future__ import annotations

import json
import secrets

from platforms.feishu.crypto import encrypt_for_tests, signature
from tests.conftest import make_settings
from tests.fakes.fake_feishu import APP_ID, APP_SECRET

ENCRYPT_KEY = "feishu-encrypt-key-for-tests"
VERIFICATION_TOKEN = "feishu-verification-token"
BOT = "ou_bot000000000000000000000000000"


def feishu_settings(**overrides):
    values = dict(feishu_app_id=APP_ID, feishu_app_secret=APP_SECRET, feishu_encrypt_key=ENCRYPT_KEY,
                  feishu_verification_token=VERIFICATION_TOKEN, feishu_domain="http://127.0.0.1:9")
    values.update(overrides)
    return make_settings(**values)


def envelope(payload: dict, *, key: str = ENCRYPT_KEY) -> bytes:
    return json.dumps({"encrypt": encrypt_for_tests(key, json.dumps(payload, ensure_ascii=False))}).encode()


def signed(body: bytes, ts: int, *, key: str = ENCRYPT_KEY, nonce: str | None = None) -> dict[str, str]:
    nonce = nonce or secrets.token_hex(8)
    return {"X-Lark-Request-Timestamp": str(ts), "X-Lark-Request-Nonce": nonce,
            "X-Lark-Signature": signature(str(ts), nonce, key, body), "Content-Type": "application/json"}


def event(event_type: str, body: dict, *, at: float, event_id: str | None = None,
          token: str = VERIFICATION_TOKEN) -> dict:
    return {"schema": "2.0",
            "header": {"event_id": event_id or secrets.token_hex(16), "event_type": event_type,
                       "create_time": str(int(at * 1000)), "token": token, "app_id": APP_ID, "tenant_key": "tk"},
            "event": body}


def message(chat_id: str | None, sender: str, text: str, *, at: float, mentions=(), event_id=None) -> dict:
    msg = {"message_id": "om_" + secrets.token_hex(8), "chat_id": chat_id or "oc_p2p" + sender[-6:],
           "chat_type": "group" if chat_id else "p2p", "message_type": "text",
           "content": json.dumps({"text": text}, ensure_ascii=False), "create_time": str(int(at * 1000)),
           "mentions": [{"key": f"@_user_{i + 1}", "id": {"open_id": oid}, "name": "群治"}
                        for i, oid in enumerate(mentions)]}
    return event("im.message.receive_v1", {"sender": {"sender_id": {"open_id": sender}, "sender_type": "user"},
                                           "message": msg}, at=at, event_id=event_id)


def card_click(operator: str, key: str, task_id: str, token: str, *, at: float, event_id=None) -> dict:
    return event("card.action.trigger", {"operator": {"open_id": operator}, "token": token,
                                         "action": {"tag": "button", "value": {"key": key, "task_id": task_id}},
                                         "context": {"open_message_id": "om_card", "open_chat_id": "oc_p2p"}},
                 at=at, event_id=event_id)
