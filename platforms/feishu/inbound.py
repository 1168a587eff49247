"""Feishu / Lark event and card callbacks (事件订阅 + 卡片回调): ``POST /feishu/callback``.

Configure this one URL in the developer console both as the event request URL (事件配置) and the
callback request URL (回调配置), with an Encrypt Key and a Verification Token
(``QUNZHI_FEISHU_ENCRYPT_KEY``, ``QUNZHI_FEISHU_VERIFICATION_TOKEN``). See README.md here.

* ``url_verification`` (the handshake, encrypted, unsigned): ``{"challenge": ...}`` at once, with
  no database work (Feishu wants it within 1 s).
* Every other callback: signature and timestamp window first (``crypto.FeishuCallback``), then
  decryption, the Verification Token, validation (``FeishuEvent``: strict types, ids no longer
  than their columns, the event time near the server clock), then ``governance.events.Event``
  and the runtime. Persons and groups are stored scoped (``feishu:ou_…``, ``feishu:oc_…``,
  ``storage.repo.scoped_id``) as every platform but WeCom's.
* Dedupe: ``msg_id`` is the header's ``event_id`` (Feishu resends an event it got no 200 for,
  with the same ``event_id``): a repeat of a stored event changes nothing.

Events read:

===================================  ==============================================================
``im.message.receive_v1``            ``message`` (text and rich text read, any other type counts as
                                     activity with no text); in a group, with ``im:message.group_msg``
                                     every message, without it only those that @-mention the bot
``im.chat.member.user.added_v1``     ``member_joined`` (the users added; the operator is the sender)
``im.chat.member.user.deleted_v1``   ``member_left``
``im.chat.member.bot.added_v1``      ``group_created`` (the bot learns of the group)
``im.chat.updated_v1``               ``group_renamed`` when the name changed
``im.chat.disbanded_v1``             ``dissolve_confirmed`` with ``data["platform_disbanded"]``
``card.action.trigger``              ``card_click`` (``event_key``/``task_id`` from the button's
                                     value, ``response_code`` = the callback token for the one
                                     delayed card update, outbox channel ``feishu_card``)
===================================  ==============================================================

Messages from bots (``sender_type`` ``app``) are ignored: a bot's traffic is not a group's
activity. Answers: a message's replies go to the outbox (``feishu`` for a person, ``feishu_chat``
for the group it was said in); the HTTP answer is 200 (``{}`` for a card, Feishu wants it within
3 s: the reply deadline is 2.5 s), 503 when the event was not stored in time (Feishu retries).
Status codes: 403 forged, stale, unsigned or not encrypted, wrong token; 400 malformed; 404 when
Feishu is not configured.
"""
from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from governance.events import Event
from platforms.common import PlatformId, PlatformText, card_kind, check_event_time, dispatch, enqueue_replies, inbox
from platforms.feishu.crypto import FeishuCallback, app_state_callback
from platforms.wecom.crypto import CallbackError, Malformed
from storage.repo import scoped_id

log = logging.getLogger("qunzhi.feishu")

router = APIRouter()

PLATFORM = "feishu"
PATH = "/feishu/callback"
CARD_CHANNEL = "feishu_card"
_MENTION_KEY = re.compile(r"@_user_\d+")


async def _callback(app) -> FeishuCallback:
    rt = inbox(app)
    fs = rt.settings.feishu
    # the first build imports the SDK (seconds): off the event loop
    return await run_in_threadpool(app_state_callback, app, fs.encrypt_key, fs.verification_token,
                                   tolerance=fs.timestamp_tolerance, clock=rt.clock)


def _refuse(e: CallbackError) -> PlainTextResponse:
    log.warning("feishu callback refused (%s): %s", e.status, e.reason)
    return PlainTextResponse("签名校验失败" if e.status == 403 else "请求格式错误", status_code=e.status)


@router.post(PATH)
async def callback(request: Request) -> Response:
    return await handle(request.app, {k.lower(): v for k, v in request.headers.items()}, await request.body())


async def handle(app, headers: dict[str, str], body: bytes) -> Response:
    rt = inbox(app)
    fs = rt.settings.feishu
    if not fs.configured:
        return PlainTextResponse("未配置飞书应用", status_code=404)
    cb = await _callback(app)
    try:
        data = cb.open(headers, body)
        if data.get("type") == "url_verification":
            challenge = data.get("challenge")
            if not isinstance(challenge, str) or len(challenge) > 256:
                raise Malformed("url_verification without a challenge")
            return JSONResponse({"challenge": challenge})
        event = to_event(data, rt.clock(), fs)
    except CallbackError as e:
        return _refuse(e)
    is_card = event is not None and event.kind == "card_click"
    replies = await dispatch(rt, event, PLATFORM)
    if isinstance(replies, Response):
        if is_card and replies.status_code == 200:
            return JSONResponse({})  # the card's own update goes through the outbox (feishu_card)
        return replies
    if event.group_id:
        await enqueue_replies(rt, event, replies, channel="feishu_chat", recipient=event.group_id)
    else:
        await enqueue_replies(rt, event, replies, channel="feishu", recipient=event.sender_id)
    return JSONResponse({}) if is_card else Response(status_code=200)


class _Endpoint:
    """``handle`` as a plain ASGI endpoint (``FAST_ROUTES``): body and headers from the scope."""

    async def __call__(self, scope, receive, send) -> None:
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        response = await handle(scope["app"], headers, b"".join(chunks))
        await response(scope, receive, send)


FAST_ROUTES = [(PATH, _Endpoint(), ["POST"])]


# --- JSON → Event ---------------------------------------------------------------------------
USER_ID_MAX = 56    # persons.id is 64 with "feishu:"
GROUP_ID_MAX = 120  # groups.id is 128 with "feishu:"
EVENT_ID_MAX = 128


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)


class _Ids(_In):
    open_id: PlatformId | None = Field(default=None, max_length=USER_ID_MAX)
    union_id: PlatformId | None = Field(default=None, max_length=USER_ID_MAX)
    user_id: PlatformId | None = Field(default=None, max_length=USER_ID_MAX)


class _Header(_In):
    event_id: PlatformId = Field(max_length=EVENT_ID_MAX)
    event_type: str = Field(max_length=64)
    create_time: str | None = Field(default=None, max_length=16)
    token: str | None = Field(default=None, max_length=256)
    app_id: str | None = Field(default=None, max_length=64)


class _Sender(_In):
    sender_id: _Ids | None = None
    sender_type: str | None = Field(default=None, max_length=16)


class _Mention(_In):
    key: str | None = Field(default=None, max_length=32)
    id: _Ids | None = None
    name: PlatformText | None = Field(default=None, max_length=256)


class _Message(_In):
    message_id: PlatformId = Field(max_length=EVENT_ID_MAX)
    chat_id: PlatformId = Field(max_length=GROUP_ID_MAX)
    chat_type: str = Field(max_length=16)
    message_type: str = Field(max_length=32)
    content: PlatformText = Field(default="", max_length=200000)
    mentions: list[_Mention] | None = Field(default=None, max_length=200)


class _User(_In):
    name: PlatformText | None = Field(default=None, max_length=256)
    user_id: _Ids | None = None


class _Change(_In):
    name: PlatformText | None = Field(default=None, max_length=256)


class _Action(_In):
    value: dict[str, Any] | None = None
    tag: str | None = Field(default=None, max_length=32)
    option: str | None = Field(default=None, max_length=256)


class _Body(_In):
    sender: _Sender | None = None
    message: _Message | None = None
    chat_id: PlatformId | None = Field(default=None, max_length=GROUP_ID_MAX)
    operator_id: _Ids | None = None
    users: list[_User] | None = Field(default=None, max_length=1000)
    name: PlatformText | None = Field(default=None, max_length=256)
    after_change: _Change | None = None
    before_change: _Change | None = None
    operator: _Ids | None = None                               # card.action.trigger
    token: PlatformId | None = Field(default=None, max_length=256)  # card.action.trigger: delayed update
    action: _Action | None = None


class FeishuEvent(_In):
    """A decrypted v2 (``schema: "2.0"``) callback, as far as Qunzhi reads it."""
    schema_: str = Field(alias="schema", max_length=8)
    header: _Header
    event: _Body


def parse(data: dict[str, Any]) -> FeishuEvent:
    try:
        return FeishuEvent.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "body"
        raise Malformed(f"feishu field {where}: {first.get('msg')} ({e.error_count()} error(s))") from None


def _person(ids: _Ids | None, id_type: str) -> str | None:
    raw = getattr(ids, id_type, None) if ids is not None else None
    return scoped_id(PLATFORM, raw) if raw else None


def _group(chat_id: str | None) -> str | None:
    return scoped_id(PLATFORM, chat_id) if chat_id else None


def message_text(m: _Message) -> str:
    """The words of a text or rich-text (post) message, @-mention placeholders removed."""
    try:
        content = json.loads(m.content) if m.content else {}
    except ValueError:
        raise Malformed("message content is not JSON") from None
    if not isinstance(content, dict):
        return ""
    if m.message_type == "text":
        text = content.get("text")
        text = text if isinstance(text, str) else ""
    elif m.message_type == "post":
        body = content.get("content")
        if body is None:  # a post may come keyed by locale: {"zh_cn": {"title", "content"}}
            body = next((v.get("content") for v in content.values() if isinstance(v, dict)), None)
        parts = []
        for line in body if isinstance(body, list) else []:
            for el in line if isinstance(line, list) else []:
                if isinstance(el, dict) and el.get("tag") in ("text", "a") and isinstance(el.get("text"), str):
                    parts.append(el["text"])
        text = " ".join(parts)
    else:
        return ""
    return " ".join(_MENTION_KEY.sub(" ", text).split()).replace("\x00", "")


def _event_time(header: _Header, now: datetime, tolerance: int) -> datetime:
    ms = header.create_time
    if ms is None or ms == "":
        return now
    if not ms.isdigit():
        raise Malformed("header.create_time is not a unix time in milliseconds")
    scale = 1_000_000 if len(ms) >= 16 else 1000  # milliseconds; microseconds in some callbacks
    return check_event_time(int(ms) // scale, now, tolerance, "header.create_time")


def to_event(data: dict[str, Any] | FeishuEvent, now: datetime, fs) -> Event | None:
    """A decrypted callback as a neutral event (None for what Qunzhi ignores); ``Malformed``
    for what does not fit (``FeishuEvent``) or a time far from ``now``. ``fs``: ``settings.feishu``."""
    e = data if isinstance(data, FeishuEvent) else parse(data)
    h, b = e.header, e.event
    at = _event_time(h, now, fs.timestamp_tolerance)
    kind = h.event_type
    base = {"event_type": kind}
    if kind == "im.message.receive_v1":
        m = b.message
        if m is None or b.sender is None:
            raise Malformed("im.message.receive_v1 without message or sender")
        if b.sender.sender_type not in (None, "user"):
            log.info("ignoring a message from a %r sender", b.sender.sender_type)
            return None
        sender = _person(b.sender.sender_id, fs.id_type)
        if sender is None:
            raise Malformed(f"message sender has no {fs.id_type} (QUNZHI_FEISHU_ID_TYPE; user_id needs its scope)")
        in_group = m.chat_type != "p2p"  # group, topic_group…
        text = message_text(m)
        mentioned = False
        if in_group:
            mentions = m.mentions or []
            # without im:message.group_msg, Feishu delivers only the messages that @-mention the bot
            mentioned = (not fs.group_msg_scope) or any(
                x.id is not None and fs.bot_open_id and x.id.open_id == fs.bot_open_id for x in mentions)
        return Event(platform=PLATFORM, kind="message", sender_id=sender, at=at, text=text,
                     group_id=_group(m.chat_id) if in_group else None, msg_id=h.event_id, mentioned_bot=bool(mentioned),
                     data={**base, "message_id": m.message_id, "message_type": m.message_type})
    if kind in ("im.chat.member.user.added_v1", "im.chat.member.user.deleted_v1"):
        members = tuple(p for p in (_person(u.user_id, fs.id_type) for u in b.users or []) if p)
        operator = _person(b.operator_id, fs.id_type) or (members[0] if members else None)
        if not b.chat_id or operator is None:
            raise Malformed(f"{kind} without chat_id or users")
        return Event(platform=PLATFORM, kind="member_joined" if kind.endswith("added_v1") else "member_left",
                     sender_id=operator, at=at, group_id=_group(b.chat_id), msg_id=h.event_id,
                     group_name=b.name or None, member_ids=members, data=base)
    if kind in ("im.chat.member.bot.added_v1", "im.chat.updated_v1", "im.chat.disbanded_v1"):
        operator = _person(b.operator_id, fs.id_type)
        if not b.chat_id or operator is None:
            raise Malformed(f"{kind} without chat_id or operator_id")
        gid = _group(b.chat_id)
        if kind == "im.chat.member.bot.added_v1":
            return Event(platform=PLATFORM, kind="group_created", sender_id=operator, at=at, group_id=gid,
                         msg_id=h.event_id, group_name=b.name or None, data=base)
        if kind == "im.chat.disbanded_v1":
            return Event(platform=PLATFORM, kind="dissolve_confirmed", sender_id=operator, at=at, group_id=gid,
                         msg_id=h.event_id, group_name=b.name or None, data={**base, "platform_disbanded": True})
        new = b.after_change.name if b.after_change else None
        old = b.before_change.name if b.before_change else None
        if not new or new == old:
            return None  # another setting changed: nothing Qunzhi keeps
        return Event(platform=PLATFORM, kind="group_renamed", sender_id=operator, at=at, group_id=gid,
                     msg_id=h.event_id, group_name=new, data=base)
    if kind == "card.action.trigger":
        operator = _person(b.operator, fs.id_type)
        if operator is None:
            raise Malformed("card.action.trigger without operator")
        value = (b.action.value if b.action else None) or {}
        event_key = value.get("key") if isinstance(value.get("key"), str) else ""
        task_id = value.get("task_id") if isinstance(value.get("task_id"), str) else ""
        if len(event_key) > 1024 or len(task_id) > 1024:
            raise Malformed("card value longer than 1024 characters")
        return Event(platform=PLATFORM, kind="card_click", sender_id=operator, at=at, msg_id=h.event_id,
                     data={**base, "event_key": event_key, "task_id": task_id, "response_code": b.token or "",
                           "card_kind": card_kind(task_id, event_key), "card_update_channel": CARD_CHANNEL,
                           "selected": []})
    log.info("ignoring feishu event %r", kind)
    return None
