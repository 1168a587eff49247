"""``BridgeSender``: POST signed instructions (e.g. dissolve) to a bridge's inbox URL.

Same signature as the bridge's events (see ``bot/adapters/BRIDGE.md``): headers
``X-Qunzhi-Timestamp`` and ``X-Qunzhi-Signature = hex(HMAC-SHA256(secret, timestamp + "." + body))``.
The bridge answers 2xx to accept; it later confirms a dissolve with an event
``type="dissolve_confirmed"``. Blocking: call from a worker thread.
"""
from __future__ import annotations

import json
import time
from typing import Callable

import requests

from bot.adapters.bridge import dissolve_instruction, signed_headers
from bot.senders.base import PermanentSendError, SendResult, TransientSendError


class BridgeSender:
    def __init__(self, url: str, secret: str, *, timeout: float = 10.0,
                 clock: Callable[[], float] = time.time, session: requests.Session | None = None):
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.clock = clock
        self.http = session or requests.Session()

    def post(self, instruction: dict) -> SendResult:
        body = json.dumps(instruction, ensure_ascii=False, separators=(",", ":")).encode()
        headers = signed_headers(self.secret, int(self.clock()), body)
        try:
            res = self.http.post(self.url, data=body, headers=headers, timeout=self.timeout)
        except requests.Timeout as e:
            raise TransientSendError(f"bridge timed out: {e}", timeout=True) from None
        except requests.RequestException as e:
            raise TransientSendError(f"bridge unreachable: {e}") from None
        if res.status_code >= 500 or res.status_code == 429:
            raise TransientSendError(f"bridge HTTP {res.status_code}", http_status=res.status_code)
        if res.status_code >= 400:
            raise PermanentSendError(f"bridge HTTP {res.status_code}", http_status=res.status_code)
        return SendResult(ok=True, errcode=0, errmsg="ok", msgid=instruction.get("instruction_id"))

    def dissolve(self, *, group_id: str, instruction_id: str, platform: str = "wechat", reason: str = "",
                 notice: str = "") -> SendResult:
        return self.post(dissolve_instruction(group_id=group_id, instruction_id=instruction_id, platform=platform,
                                              reason=reason, notice=notice))

    def send_group_text(self, group_id: str, text: str, *, instruction_id: str, platform: str = "wechat") -> SendResult:
        return self.post({"type": "say", "group_id": group_id, "instruction_id": instruction_id,
                          "platform": platform, "text": text})
