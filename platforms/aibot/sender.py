"""``AibotSender``: answer an AI bot callback through its ``response_url`` (智能机器人 主动回复消息).

WeCom document 101138: a callback for a user's message or a card click carries a
``response_url``; one HTTP POST of JSON to it answers that callback, ``{"msgtype": "markdown",
"markdown": {"content": ...}}`` or ``{"msgtype": "template_card", "template_card": {...}}``.
**Each response_url can be used once, and only within one hour**: the outbox dispatcher decides
whether a row may still use it (``scheduler.routing``); this sender only makes the one call.
No access token is needed (the URL carries a response code). The AI bot has no API to message
someone unprompted: a later notice to a person goes through the self-built app, where one is
configured.

The answer is WeCom's usual ``{"errcode": 0, "errmsg": "ok"}``; a non-zero errcode is mapped by
``platforms.base.error_for`` (rate limit and busy are transient, the rest permanent); HTTP 5xx,
429 and connection errors are transient, other 4xx permanent. A timeout is transient with
``timeout=True``: the URL may have been used, so the dispatcher does not resend it.
Blocking: call from a worker thread.
"""
from __future__ import annotations

import json

import requests

from platforms.aibot.inbound import markdown_escape
from platforms.http import answered
from platforms.base import PermanentSendError, SendResult, error_for

DEFAULT_TIMEOUT = 10.0


class AibotSender:
    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, session: requests.Session | None = None):
        self.timeout = timeout
        self.http = session or requests.Session()

    def respond(self, response_url: str, message: dict) -> SendResult:
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
        res = answered("response_url", lambda: self.http.post(
            response_url, data=body, timeout=self.timeout, headers={"Content-Type": "application/json; charset=utf-8"}))
        try:
            data = res.json()
        except ValueError:
            raise PermanentSendError(f"response_url answered no JSON: {res.text[:200]!r}") from None
        errcode = int(data.get("errcode") or 0) if isinstance(data, dict) else -1
        if errcode:
            raise error_for(errcode, str(data.get("errmsg", "")))
        return SendResult(ok=True, errcode=0, errmsg="ok", raw=data)

    def respond_text(self, response_url: str, text: str) -> SendResult:
        """Plain text, escaped so that it renders as typed (the answer is markdown)."""
        return self.respond_markdown(response_url, markdown_escape(text))

    def respond_markdown(self, response_url: str, markdown: str) -> SendResult:
        return self.respond(response_url, {"msgtype": "markdown", "markdown": {"content": markdown}})

    def respond_card(self, response_url: str, card: dict) -> SendResult:
        return self.respond(response_url, {"msgtype": "template_card", "template_card": card})
