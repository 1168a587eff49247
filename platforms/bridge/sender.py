"""``BridgeSender``: POST signed instructions (dissolve, cancel, say) to a bridge's inbox URL.

Built by ``scheduler.routing.build_senders`` when ``QUNZHI_BRIDGE_URL`` and
``QUNZHI_BRIDGE_SECRET`` are set; the outbox dispatcher sends every row of channel ``bridge``
through it. Same signature as the bridge's events (see ``platforms/bridge/BRIDGE.md``): headers
``X-Qunzhi-Timestamp`` and ``X-Qunzhi-Signature = hex(HMAC-SHA256(secret, timestamp + "." + body))``.
Every instruction carries an ``instruction_id`` that stays the same across retries, so the
bridge drops a repeat. The bridge answers 2xx to accept; it later confirms a dissolve with an
event ``type="dissolve_confirmed"``. Blocking: call from a worker thread.
"""
from __future__ import annotations

import json
import time
from typing import Callable

import requests

from platforms.bridge.inbound import dissolve_instruction, signed_headers
from platforms.http import answered
from platforms.base import SendResult
from storage.repo import bridge_platform, raw_id

DEFAULT_PLATFORM = "wechat"


class BridgeSender:
    def __init__(self, url: str, secret: str, *, timeout: float = 10.0,
                 clock: Callable[[], float] = time.time, session: requests.Session | None = None):
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.clock = clock
        self.http = session or requests.Session()

    def post(self, instruction: dict) -> SendResult:
        """POST one instruction (ids as stored: scoped ones are sent raw, see :func:`outgoing`).
        2xx accepted; 5xx, 429, timeouts and connection errors are transient (the outbox retries
        with the same ``instruction_id``); any other 4xx is permanent."""
        instruction = outgoing(instruction)
        body = json.dumps(instruction, ensure_ascii=False, separators=(",", ":")).encode()
        headers = signed_headers(self.secret, int(self.clock()), body)
        res = answered("bridge", lambda: self.http.post(self.url, data=body, headers=headers, timeout=self.timeout),
                       detail=True)
        return SendResult(ok=True, errcode=0, errmsg="ok", msgid=instruction.get("instruction_id"))

    def dissolve(self, *, group_id: str, instruction_id: str, platform: str | None = None, reason: str = "",
                 notice: str = "") -> SendResult:
        return self.post(dissolve_instruction(group_id=group_id, instruction_id=instruction_id,
                                              platform=platform or platform_of(group_id), reason=reason,
                                              notice=notice))

    def send_group_text(self, group_id: str, text: str, *, instruction_id: str,
                        platform: str | None = None) -> SendResult:
        """Say ``text`` in a group."""
        return self.post({"type": "say", "group_id": group_id, "instruction_id": instruction_id,
                          "platform": platform or platform_of(group_id), "text": text})

    def send_user_text(self, user_id: str, text: str, *, instruction_id: str,
                       platform: str | None = None) -> SendResult:
        """Say ``text`` to one person in a direct chat (a notice to a bridge person)."""
        return self.post({"type": "say", "user_id": user_id, "instruction_id": instruction_id,
                          "platform": platform or platform_of(user_id), "text": text})


def platform_of(stored_id: str) -> str:
    """The platform a stored bridge id is scoped by (``wechat:wxg-1`` → ``wechat``; unscoped: wechat)."""
    return bridge_platform(stored_id) or DEFAULT_PLATFORM


def outgoing(instruction: dict) -> dict:
    """An instruction as the bridge reads it: Qunzhi stores bridge groups and people scoped by
    platform (``wechat:wxg-1``); the bridge knows and sends the raw id (``wxg-1``), so that is what
    it gets."""
    key = "group_id" if isinstance(instruction.get("group_id"), str) else "user_id"
    stored = instruction.get(key)
    if not isinstance(stored, str):
        return instruction
    platform = instruction.get("platform") or platform_of(stored)
    return {**instruction, key: raw_id(platform, stored), "platform": platform}
