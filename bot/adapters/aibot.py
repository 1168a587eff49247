"""WeCom AI bot callback (企业微信智能机器人): ``GET/POST /wecom/aibot/callback``.

Same crypto as the self-built app (``bot.adapters.crypto``) with ``AIBOT_TOKEN`` /
``AIBOT_AES_KEY`` and receive id ``""``. The POST body is JSON ``{"encrypt": "..."}`` with
``msg_signature``, ``timestamp`` and ``nonce`` in the query string; the decrypted JSON carries
``msgid`` (dedupe key), ``aibotid``, ``chatid``, ``chattype`` (``single``/``group``),
``from.userid``, ``msgtype`` (``text``, ``mixed``, ``event``, ``stream``) and ``response_url``.

A group message reaches the bot only when it @-mentions it: it becomes
``Event(platform="aibot", group_id=chatid, mentioned_bot=True)`` with the leading @mention
removed, so the group's activity is recorded and the command runs.

Passive replies (WeCom document 101031 "智能机器人 / 被动回复消息", and the envelope of
Tencent's ``WXBizJsonMsgCrypt.EncryptMsg`` in its "callback_json" sample, document 101033
"回调和回复的加解密方案"): the plaintext JSON is encrypted like a callback and answered as
``{"encrypt": ..., "msgsignature": ..., "timestamp": ..., "nonce": ...}`` (same timestamp and
nonce as the request). Plaintext by situation:

* a user message → ``{"msgtype": "stream", "stream": {"id": ..., "finish": true,
  "content": "<markdown>"}}``: the document allows only a stream message or a template card
  in answer to a message (plain text only for ``enter_chat``); one finished stream chunk is how
  a single markdown answer is given. Several replies are joined with a blank line;
* ``enter_chat`` (first visit of the day to the direct chat) → ``{"msgtype": "text",
  "text": {"content": ...}}``;
* cards and card clicks → empty 200 and the outbox (``channel="aibot"``, the ``response_url``
  in the payload: it accepts one active reply within an hour);
* a handler that misses the deadline → HTTP 503 (nothing acknowledged before it is stored; WeCom
  retries, the retry is a duplicate once the first attempt commits); the first attempt's
  replies go to the outbox with its ``response_url``.
"""
from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from bot.adapters.common import card_kind, dispatch, enqueue_replies, from_unix, query, raw_endpoint
from bot.adapters.crypto import CallbackCrypto, CallbackError, Malformed, app_state_crypto
from handlers.events import Event

log = logging.getLogger("qunzhi.aibot")

router = APIRouter()

PLATFORM = "aibot"
RECEIVE_ID = ""  # 企业内部智能机器人场景中, ReceiveId 为 ""
_LEADING_MENTIONS = re.compile(r"^(?:\s*@\S+)+\s*")


def _crypto(app) -> CallbackCrypto:
    rt = app.state.runtime
    s = rt.settings
    return app_state_crypto(app, "aibot", s.aibot_token, s.aibot_aes_key, RECEIVE_ID,
                            tolerance=s.wecom_timestamp_tolerance, clock=rt.clock)


def _refuse(e: CallbackError) -> PlainTextResponse:
    log.warning("aibot callback refused (%s): %s", e.status, e.reason)
    return PlainTextResponse("签名校验失败" if e.status == 403 else "请求格式错误", status_code=e.status)


@router.get("/wecom/aibot/callback")
async def verify_url(request: Request) -> Response:
    if not request.app.state.runtime.settings.aibot_configured:
        return PlainTextResponse("未配置智能机器人", status_code=404)
    q = query(request)
    try:
        echo = _crypto(request.app).verify_and_decrypt(q.get("msg_signature"), q.get("timestamp"), q.get("nonce"),
                                                   q.get("echostr"))
    except CallbackError as e:
        return _refuse(e)
    return PlainTextResponse(echo)


def _json_object(raw: bytes | str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise Malformed("body is not JSON") from None
    if not isinstance(value, dict):
        raise Malformed("body is not a JSON object")
    return value


@router.post("/wecom/aibot/callback")
async def callback(request: Request) -> Response:
    return await handle(request.app, query(request), await request.body())


async def handle(app, q: dict[str, str], body: bytes) -> Response:
    """The callback without a Request: also served by ``raw_endpoint`` (``FAST_ROUTES``)."""
    rt = app.state.runtime
    if not rt.settings.aibot_configured:
        return PlainTextResponse("未配置智能机器人", status_code=404)
    crypto = _crypto(app)
    try:
        encrypt = _json_object(body).get("encrypt")
        if not isinstance(encrypt, str):
            raise Malformed("no encrypt field")
        data = _json_object(crypto.verify_and_decrypt(q.get("msg_signature"), q.get("timestamp"), q.get("nonce"),
                                                      encrypt))
    except CallbackError as e:
        return _refuse(e)

    event = to_event(data, rt.clock())
    replies = await dispatch(rt, event, "aibot")
    if isinstance(replies, Response):
        return replies
    texts = [r.text for r in replies if r.text and r.card is None]
    later = [r for r in replies if r.card is not None]
    plaintext = None
    if event.kind == "message" and texts:
        plaintext = {"msgtype": "stream", "stream": {"id": _stream_id(event), "finish": True,
                                                     "content": "\n\n".join(texts)}}
    elif event.kind == "enter_chat" and texts:
        plaintext = {"msgtype": "text", "text": {"content": "\n\n".join(texts)}}
    else:
        later = replies
    if later:
        await enqueue_replies(rt, event, later, channel="aibot", recipient=event.group_id or event.sender_id,
                        extra={"response_url": event.data.get("response_url"), "chatid": event.group_id})
    if plaintext is None:
        return Response(status_code=200)
    body = crypto.encrypt_json(json.dumps(plaintext, ensure_ascii=False), q.get("nonce", ""), q.get("timestamp", ""))
    return JSONResponse(body)


def _stream_id(event: Event) -> str:
    return "qz" + re.sub(r"[^0-9A-Za-z]", "", event.msg_id or "")[-40:]


# The callback is the busiest endpoint: also routed first, as a plain ASGI endpoint (bot/routes.py).
FAST_ROUTES = [("/wecom/aibot/callback", raw_endpoint(handle), ["POST"])]


# --- JSON → Event ---------------------------------------------------------------------------
def strip_mention(text: str) -> str:
    """Remove the leading @mention(s) WeCom leaves in a group message (``@群治 我的群`` → ``我的群``)."""
    return _LEADING_MENTIONS.sub("", text or "", count=1).strip()


def _text_of(data: dict[str, Any]) -> str:
    msgtype = data.get("msgtype")
    if msgtype == "text":
        return str((data.get("text") or {}).get("content") or "")
    if msgtype == "mixed":
        items = (data.get("mixed") or {}).get("msg_item") or []
        return " ".join(str((i.get("text") or {}).get("content") or "") for i in items
                        if isinstance(i, dict) and i.get("msgtype") == "text").strip()
    return ""


def to_event(data: dict[str, Any], now: datetime) -> Event | None:
    sender = str(((data.get("from") or {}) if isinstance(data.get("from"), dict) else {}).get("userid") or "")
    msgid = str(data.get("msgid") or "")
    if not sender or not msgid:
        return None
    in_group = data.get("chattype") == "group"
    group_id = str(data.get("chatid") or "") or None if in_group else None
    at = from_unix(data.get("create_time"), now)
    base = {"aibot_id": data.get("aibotid"), "response_url": data.get("response_url")}
    msgtype = data.get("msgtype")
    if msgtype in ("text", "mixed"):
        text = _text_of(data)
        return Event(platform=PLATFORM, kind="message", sender_id=sender, at=at,
                     text=strip_mention(text) if in_group else text.strip(), group_id=group_id, msg_id=msgid,
                     mentioned_bot=in_group, data=base)
    if msgtype == "event":
        ev = data.get("event") if isinstance(data.get("event"), dict) else {}
        kind = ev.get("eventtype")
        if kind == "enter_chat":
            return Event(platform=PLATFORM, kind="enter_chat", sender_id=sender, at=at, group_id=group_id,
                         msg_id=msgid, data=base)
        if kind == "template_card_event":
            return Event(platform=PLATFORM, kind="card_click", sender_id=sender, at=at, group_id=group_id,
                         msg_id=msgid, data={**base, **_card_event(ev.get("template_card_event") or {})})
    log.info("ignoring aibot callback msgtype=%r", msgtype)
    return None


def _card_event(ev: dict[str, Any]) -> dict[str, Any]:
    items = ((ev.get("selected_items") or {}).get("selected_item")) or []
    selected = [{"question_key": str(i.get("question_key") or ""),
                 "option_ids": [str(o) for o in ((i.get("option_ids") or {}).get("option_id") or [])]}
                for i in items if isinstance(i, dict)]
    task_id, event_key = str(ev.get("task_id") or ""), str(ev.get("event_key") or "")
    return {"event_key": event_key, "task_id": task_id, "card_type": str(ev.get("card_type") or ""),
            "response_code": str(ev.get("response_code") or ""), "selected": selected,
            "card_kind": card_kind(task_id, event_key)}
