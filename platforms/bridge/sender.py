"""``BridgeSender``: POST signed instructions (e.g. dissolve) to a bridge's inbox URL.

Same signature as the bridge's events (see ``platforms/bridge/BRIDGE.md``): headers
``X-Qunzhi-Timestamp`` and ``X-Qunzhi-Signature = hex(HMAC-SHA256(secret, timestamp + "." + body))``.
The bridge answers 2xx to accept; it later confirms a dissolve with an event
``type="dissolve_confirmed"``. Blocking: call from a worker thread.
"""
from __future__ import annotations

import json
import time
from typing import Callable

import requests

from platforms.bridge.inbound import dissolve_instruction, signed_headers
from platforms.base import PermanentSendError, SendResult, TransientSendError
from storage.repo import UNSCOPED_PLATFORMS, raw_id


class BridgeSender:
    def __init__(self, url: str, secret: str, *, timeout: float = 10.0,
                 clock: Callable[[], float] = time.time, session: requests.Session | None = None):
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.clock = clock
        self.http = session or requests.Session()

    def post(self, instruction: dict) -> SendResult:
        instruction = outgoing(instruction)
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

    def dissolve(self, *, group_id: str, instruction_id: str, platform: str | None = None, reason: str = "",
                 notice: str = "") -> SendResult:
        return self.post(dissolve_instruction(group_id=group_id, instruction_id=instruction_id,
                                              platform=platform or _platform_of(group_id), reason=reason,
                                              notice=notice))

    def send_group_text(self, group_id: str, text: str, *, instruction_id: str,
                        platform: str | None = None) -> SendResult:
        return self.post({"type": "say", "group_id": group_id, "instruction_id": instruction_id,
                          "platform": platform or _platform_of(group_id), "text": text})


def _platform_of(group_id: str) -> str:
    """The platform a stored bridge group id is scoped by (``wechat:wxg-1`` → ``wechat``)."""
    prefix = group_id.split(":", 1)[0] if ":" in group_id else ""
    return prefix if prefix and prefix not in UNSCOPED_PLATFORMS else "wechat"


def outgoing(instruction: dict) -> dict:
    """An instruction as the bridge reads it: Qunzhi stores bridge groups scoped by platform
    (``wechat:wxg-1``); the bridge knows and sends the raw id (``wxg-1``), so that is what it gets."""
    gid = instruction.get("group_id")
    if not isinstance(gid, str):
        return instruction
    platform = instruction.get("platform") or _platform_of(gid)
    return {**instruction, "group_id": raw_id(platform, gid), "platform": platform}
