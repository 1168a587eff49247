"""The outbound sender contract and the errors the outbox dispatcher acts on.

Senders are synchronous (they block on HTTP): call them from scheduler threads or through
``run_in_threadpool``, never directly on the event loop.

* ``TransientSendError``: try again later (timeouts, connection errors, HTTP 5xx/429, errcode
  45009 rate limit → ``rate_limited=True``, 40014/42001 token expired after one refresh →
  ``token_expired=True``, -1 system busy).
* ``PermanentSendError``: retrying will not help (any other errcode, HTTP 4xx); the dispatcher
  marks the message dead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

RATE_LIMITED = 45009          # 接口调用超过限制
TOKEN_ERRCODES = (40014, 42001)  # 不合法的 access_token / access_token 已过期
BUSY_ERRCODES = (-1, 45033)      # 系统繁忙 / 接口并发调用超过限制


@dataclass(frozen=True)
class SendResult:
    ok: bool
    errcode: int = 0
    errmsg: str = "ok"
    msgid: str | None = None
    raw: dict[str, Any] | None = None


class SendError(Exception):
    def __init__(self, message: str, *, errcode: int | None = None, http_status: int | None = None):
        super().__init__(message)
        self.errcode = errcode
        self.http_status = http_status


class TransientSendError(SendError):
    def __init__(self, message: str, *, errcode: int | None = None, http_status: int | None = None,
                 rate_limited: bool = False, token_expired: bool = False, timeout: bool = False):
        super().__init__(message, errcode=errcode, http_status=http_status)
        self.rate_limited = rate_limited
        self.token_expired = token_expired
        self.timeout = timeout


class PermanentSendError(SendError):
    """WeCom refused for good (bad recipient, bad content): retrying will not help."""


def error_for(errcode: int, errmsg: str, *, http_status: int | None = None) -> SendError:
    """Map a WeCom errcode to the exception the dispatcher understands."""
    text = f"errcode {errcode}: {errmsg}"
    if errcode == RATE_LIMITED:
        return TransientSendError(text, errcode=errcode, http_status=http_status, rate_limited=True)
    if errcode in TOKEN_ERRCODES:
        return TransientSendError(text, errcode=errcode, http_status=http_status, token_expired=True)
    if errcode in BUSY_ERRCODES:
        return TransientSendError(text, errcode=errcode, http_status=http_status)
    return PermanentSendError(text, errcode=errcode, http_status=http_status)


@runtime_checkable
class Sender(Protocol):
    def send_text(self, user_ids: list[str], text: str) -> SendResult: ...

    def send_markdown(self, user_ids: list[str], markdown: str) -> SendResult: ...

    def send_card(self, user_ids: list[str], card: dict) -> SendResult: ...

    def update_card(self, response_code: str, card: dict, user_ids: list[str] | None = None) -> SendResult: ...

    def appchat_create(self, chat_id: str, name: str, owner: str, user_ids: list[str]) -> SendResult: ...

    def appchat_update(self, chat_id: str, name: str | None = None, owner: str | None = None,
                       add_user_list: list[str] | None = None,
                       del_user_list: list[str] | None = None) -> SendResult: ...

    def appchat_get(self, chat_id: str) -> dict: ...

    def appchat_send_text(self, chat_id: str, text: str) -> SendResult: ...
