"""WeCom AI bot callback (企业微信智能机器人): ``GET/POST /wecom/aibot/callback``.

Same crypto as the self-built app (``platforms.wecom.crypto``) with ``AIBOT_TOKEN`` /
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

A repeat of a stored callback (same ``msgid``; WeCom may resend byte for byte, so nonces are not
remembered) stores nothing and is answered as the first attempt was. Fields of the wrong JSON
type, ids longer than their columns and a ``create_time`` far from the server clock are 400.
"""
from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from platforms.common import (json_object, PlatformId, PlatformText, card_kind, check_event_time, dispatch, enqueue_replies,
                              from_unix, inbox, query, raw_endpoint)
from platforms.wecom.crypto import CallbackCrypto, CallbackError, Malformed, app_state_crypto
from governance.events import Event

log = logging.getLogger("qunzhi.aibot")

router = APIRouter()

PLATFORM = "aibot"
RECEIVE_ID = ""  # 企业内部智能机器人场景中, ReceiveId 为 ""
_LEADING_MENTIONS = re.compile(r"^(?:\s*@\S+)+\s*")


def _crypto(app) -> CallbackCrypto:
    rt = inbox(app)
    s = rt.settings
    return app_state_crypto(app, "aibot", s.aibot_token, s.aibot_aes_key, RECEIVE_ID,
                            tolerance=s.wecom_timestamp_tolerance, clock=rt.clock)


def _refuse(e: CallbackError) -> PlainTextResponse:
    log.warning("aibot callback refused (%s): %s", e.status, e.reason)
    return PlainTextResponse("签名校验失败" if e.status == 403 else "请求格式错误", status_code=e.status)


@router.get("/wecom/aibot/callback")
async def verify_url(request: Request) -> Response:
    if not inbox(request.app).settings.aibot_configured:
        return PlainTextResponse("未配置智能机器人", status_code=404)
    q = query(request)
    try:
        echo = _crypto(request.app).verify_and_decrypt(q.get("msg_signature"), q.get("timestamp"), q.get("nonce"),
                                                   q.get("echostr"))
    except CallbackError as e:
        return _refuse(e)
    return PlainTextResponse(echo)




@router.post("/wecom/aibot/callback")
async def callback(request: Request) -> Response:
    return await handle(request.app, query(request), await request.body())


async def handle(app, q: dict[str, str], body: bytes) -> Response:
    """The callback without a Request: also served by ``raw_endpoint`` (``FAST_ROUTES``)."""
    rt = inbox(app)
    if not rt.settings.aibot_configured:
        return PlainTextResponse("未配置智能机器人", status_code=404)
    crypto = _crypto(app)
    try:
        encrypt = json_object(body).get("encrypt")
        if not isinstance(encrypt, str):
            raise Malformed("no encrypt field")
        data = json_object(crypto.verify_and_decrypt(q.get("msg_signature"), q.get("timestamp"), q.get("nonce"),
                                                      encrypt))
        event = to_event(data, rt.clock(), tolerance=rt.settings.wecom_timestamp_tolerance)
    except CallbackError as e:
        return _refuse(e)

    replies = await dispatch(rt, event, "aibot")
    if isinstance(replies, Response):
        return replies
    shown = [r for r in replies if r.text and r.card is None]
    texts = [r.text for r in shown]
    later = [r for r in replies if r.card is not None]
    plaintext = None
    if event.kind == "message" and texts:
        # the stream is markdown: plain-text replies are escaped (a name cannot become a link)
        content = "\n\n".join(r.text if r.markdown else markdown_escape(r.text) for r in shown)
        plaintext = {"msgtype": "stream", "stream": {"id": _stream_id(event), "finish": True, "content": content}}
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
# The decrypted JSON is validated before anything else looks at it: a field of the wrong JSON type
# (``text`` as a list, ``msg_item`` as a number, ``template_card_event`` as a string …) or an id
# longer than the column it is stored in is a 400 and changes nothing. Fields WeCom adds later are
# ignored (not refused: the platform's schema grows). Strict types: a number where WeCom sends a
# string is refused, not converted.
USER_ID_MAX = 64     # persons.id
GROUP_ID_MAX = 128   # groups.id
MSG_ID_MAX = 128     # processed_events.key / messages.dedupe_key are 200 with "aibot:" and outbox "reply:…:n"


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)


class _Text(_In):
    content: PlatformText | None = Field(default=None, max_length=20000)


class _MixedItem(_In):
    msgtype: str | None = Field(default=None, max_length=32)
    text: _Text | None = None


class _Mixed(_In):
    msg_item: list[_MixedItem] | None = Field(default=None, max_length=100)


class _From(_In):
    userid: PlatformId | None = Field(default=None, max_length=USER_ID_MAX)


class _Options(_In):
    option_id: list[Annotated[str, Field(max_length=256)]] | None = Field(default=None, max_length=100)


class _SelectedItem(_In):
    question_key: str | None = Field(default=None, max_length=256)
    option_ids: _Options | None = None


class _Selected(_In):
    selected_item: list[_SelectedItem] | None = Field(default=None, max_length=100)


class _Card(_In):
    card_type: str | None = Field(default=None, max_length=64)
    event_key: PlatformId | None = Field(default=None, max_length=1024)
    task_id: PlatformId | None = Field(default=None, max_length=1024)
    response_code: PlatformId | None = Field(default=None, max_length=1024)
    selected_items: _Selected | None = None


class _EventBody(_In):
    eventtype: str | None = Field(default=None, max_length=64)
    template_card_event: _Card | None = None


class AibotMessage(_In):
    """The decrypted AI bot callback, as far as Qunzhi reads it."""

    msgid: PlatformId | None = Field(default=None, max_length=MSG_ID_MAX)
    aibotid: PlatformId | None = Field(default=None, max_length=128)
    chatid: PlatformId | None = Field(default=None, max_length=GROUP_ID_MAX)
    chattype: str | None = Field(default=None, max_length=16)
    from_: _From | None = Field(default=None, alias="from")
    response_url: str | None = Field(default=None, max_length=2048)
    msgtype: str | None = Field(default=None, max_length=32)
    create_time: int | None = None
    text: _Text | None = None
    mixed: _Mixed | None = None
    event: _EventBody | None = None


def parse(data: dict[str, Any]) -> AibotMessage:
    """Validate the decrypted JSON; ``Malformed`` (400) with the precise reason for the log."""
    try:
        return AibotMessage.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "body"
        raise Malformed(f"aibot field {where}: {first.get('msg')} ({e.error_count()} error(s))") from None


def strip_mention(text: str) -> str:
    """Remove the leading @mention(s) WeCom leaves in a group message (``@群治 我的群`` → ``我的群``)."""
    return _LEADING_MENTIONS.sub("", text or "", count=1).strip()


def _text_of(m: AibotMessage) -> str:
    if m.msgtype == "text":
        return (m.text.content if m.text else None) or ""
    if m.msgtype == "mixed":
        items = (m.mixed.msg_item if m.mixed else None) or []
        return " ".join((i.text.content if i.text else None) or "" for i in items if i.msgtype == "text").strip()
    return ""


def to_event(data: dict[str, Any] | AibotMessage, now: datetime, *, tolerance: int | None = None) -> Event | None:
    """Map a decrypted callback to a neutral event (None for what the bot ignores); ``Malformed``
    for JSON that does not fit (see ``AibotMessage``) and, given the callback ``tolerance``, for a
    ``create_time`` far from ``now`` (``common.check_event_time``)."""
    m = data if isinstance(data, AibotMessage) else parse(data)
    sender = (m.from_.userid if m.from_ else None) or ""
    msgid = m.msgid or ""
    if not sender or not msgid:
        return None
    in_group = m.chattype == "group"
    group_id = (m.chatid or None) if in_group else None
    at = from_unix(m.create_time, now) if tolerance is None else check_event_time(m.create_time, now, tolerance,
                                                                                  "create_time")
    base = {"aibot_id": m.aibotid, "response_url": m.response_url}
    if m.msgtype in ("text", "mixed"):
        text = _text_of(m)
        return Event(platform=PLATFORM, kind="message", sender_id=sender, at=at,
                     text=strip_mention(text) if in_group else text.strip(), group_id=group_id, msg_id=msgid,
                     mentioned_bot=in_group, data=base)
    if m.msgtype == "event":
        kind = m.event.eventtype if m.event else None
        if kind == "enter_chat":
            return Event(platform=PLATFORM, kind="enter_chat", sender_id=sender, at=at, group_id=group_id,
                         msg_id=msgid, data=base)
        if kind == "template_card_event":
            return Event(platform=PLATFORM, kind="card_click", sender_id=sender, at=at, group_id=group_id,
                         msg_id=msgid, data={**base, **_card_event(m.event.template_card_event or _Card())})
    log.info("ignoring aibot callback msgtype=%r", m.msgtype)
    return None


def _card_event(ev: _Card) -> dict[str, Any]:
    items = (ev.selected_items.selected_item if ev.selected_items else None) or []
    selected = [{"question_key": i.question_key or "",
                 "option_ids": list((i.option_ids.option_id if i.option_ids else None) or [])} for i in items]
    task_id, event_key = ev.task_id or "", ev.event_key or ""
    return {"event_key": event_key, "task_id": task_id, "card_type": ev.card_type or "",
            "response_code": ev.response_code or "", "selected": selected,
            "card_kind": card_kind(task_id, event_key)}


# --- markdown -----------------------------------------------------------------------------------
# Handler replies are plain text; the AI bot's passive answer is a markdown stream. Rendering plain
# text as markdown escapes what markdown would interpret, so a group named ``[点此登录](http://x)``
# shows as typed instead of becoming a link (and ``*`` / ``#`` / ``>`` in names stay characters).
_MD_INLINE = re.compile(r"([\\`*_\[\]<>~|])")
_MD_BLOCK = re.compile(r"^(\s*)([#>+\-=]|\d+(?=[.)]))", re.MULTILINE)


def markdown_escape(text: str) -> str:
    """Plain text as CommonMark that renders to the same characters (backslash escapes)."""
    out = _MD_INLINE.sub(r"\\\1", text)
    return _MD_BLOCK.sub(lambda m: m.group(1) + (m.group(2) + "\\" if m.group(2)[0].isdigit() else "\\" + m.group(2)),
                         out)
