"""DingTalk callbacks: the robot's messages (``POST /dingtalk/robot``), its interactive cards'
clicks (``POST /dingtalk/card``) and the app's event subscription (``POST /dingtalk/events``).
Stream mode (``platforms.dingtalk.stream``) feeds the same ``to_event`` / ``card_event``.

**Robot callback** (HTTP mode of an enterprise-internal robot): headers ``timestamp`` (unix ms)
and ``sign`` = Base64(HMAC-SHA256(key=AppSecret, timestamp + "\\n" + AppSecret)), compared in
constant time. DingTalk tells receivers to refuse a timestamp more than an hour off; Qunzhi refuses
more than ``QUNZHI_DINGTALK_TIMESTAMP_TOLERANCE`` (600 s by default, never more than 3600). The
body is the message JSON (the fields of ``dingtalk_stream.ChatbotMessage``): ``msgId`` (dedupe),
``conversationType`` ``1`` direct / ``2`` group, ``conversationId`` (the openConversationId),
``conversationTitle``, ``senderStaffId`` (the userid), ``isInAtList``, ``createAt`` (ms),
``text.content``. The robot hears only @-mentions in groups and direct chats (activity source
``mentions``). A single short text reply is answered in the response body
(``{"msgtype": "text", ...}``); cards and several replies go to the outbox (channel ``dingtalk``, to
the person).

**Card clicks** (``actionCallback``: ``outTrackId``, ``userId``, ``content`` = JSON with
``cardPrivateData.actionIds``): in HTTP mode signed with the same ``timestamp``/``sign`` headers
(the card callback route is registered with the app secret as its api secret; an inference from
the robot scheme, see README). The click becomes ``Event(kind="card_click")`` with ``event_key`` =
the tapped action id, ``task_id`` = the card's task, ``response_code`` = ``dingtalk:<outTrackId>``
(the one update, through ``scheduler.routing``), ``card_kind`` (``handlers.classify`` keeps pulse
and useless taps anonymous). Dedupe key: the card and the action (a second tap on the same button
stores nothing).

**Event subscription**: WeCom's AES scheme (``platforms.wecom.crypto``, wechatpy's PrpCrypto) with
the CorpId as receive id: query ``signature`` (or ``msg_signature``), ``timestamp`` (s or ms),
``nonce``; body ``{"encrypt": ...}``; every answer is the encrypted ``success``
(``{"msg_signature", "timeStamp", "nonce", "encrypt"}``), the URL check (``check_url``) included.
Group events: ``chat_add_member`` → member_joined, ``chat_remove_member`` / ``chat_quit`` →
member_left, ``chat_update_title`` → group_renamed; ``chat_disband`` is logged.

Refusals: 403 forged / stale / not ours, 400 malformed (wrong JSON types, ids too long, event times
far from the server clock), 404 not configured; nothing is stored. Replays inside the window are
absorbed by the durable dedupe (``processed_events``), as for WeCom.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
from datetime import datetime
from typing import Any, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from governance.events import Event, Reply
from platforms.common import json_object, PlatformId, PlatformText, card_kind, check_event_time, dispatch, enqueue_replies, inbox
from platforms.wecom.crypto import CallbackCrypto, CallbackError, Forbidden, Malformed, signature
from storage.repo import scoped_id

log = logging.getLogger("qunzhi.dingtalk")

router = APIRouter()

PLATFORM = "dingtalk"
CHANNEL = "dingtalk"
CARD_PREFIX = "dingtalk:"
PASSIVE_TEXT_MAX = 4000
USER_ID_MAX = 64
GROUP_ID_MAX = 128
MSG_ID_MAX = 128
_LEADING_MENTIONS = re.compile(r"^(?:\s*@\S+)+\s*")


# --- the robot's signature ---------------------------------------------------------------------
def robot_sign(timestamp: str, secret: str) -> str:
    """Base64(HMAC-SHA256(secret, timestamp + "\\n" + secret)), DingTalk's robot signature."""
    mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def verify_robot(timestamp: str | None, sign: str | None, secret: str, now: datetime, tolerance: int) -> None:
    """``Forbidden`` unless ``sign`` is the robot signature of ``timestamp`` (ms) within ``tolerance`` s."""
    if not timestamp or not sign:
        raise Forbidden("missing timestamp or sign header")
    if not timestamp.isdigit() or len(timestamp) > 15:
        raise Forbidden("timestamp is not a unix time in milliseconds")
    if not hmac.compare_digest(robot_sign(timestamp, secret).encode(), sign.strip().encode()):
        raise Forbidden("bad sign")
    if abs(now.timestamp() * 1000 - int(timestamp)) > tolerance * 1000:
        raise Forbidden("timestamp outside the accepted window")


# --- the event subscription's crypto -------------------------------------------------------------
class EventCrypto(CallbackCrypto):
    """WeCom's scheme (wechatpy's PrpCrypto; sha1 of the sorted token, timestamp, nonce and
    ciphertext) with DingTalk's timestamps (seconds or milliseconds) and answer envelope."""

    def verify(self, msg_signature, timestamp, nonce, encrypt) -> None:
        if not (msg_signature and timestamp and nonce and encrypt):
            raise Forbidden("missing signature, timestamp, nonce or ciphertext")
        if not timestamp.isdigit() or len(timestamp) > 15:
            raise Forbidden("timestamp is not a unix time")
        expected = signature(self.token, timestamp, nonce, encrypt)
        if not hmac.compare_digest(expected.encode(), msg_signature.strip().lower().encode()):
            raise Forbidden("bad signature")
        ts = int(timestamp)
        seconds = ts / 1000 if len(timestamp) >= 13 else ts
        if abs(self.clock().timestamp() - seconds) > self.tolerance:
            raise Forbidden("timestamp outside the accepted window")

    def answer(self, plaintext: str = "success") -> dict[str, str]:
        ts = str(int(self.clock().timestamp() * 1000))
        nonce = secrets.token_hex(8)
        enc = self.encrypt(plaintext)
        return {"msg_signature": signature(self.token, ts, nonce, enc), "timeStamp": ts, "nonce": nonce,
                "encrypt": enc}


def _event_crypto(app) -> EventCrypto:
    rt = inbox(app)
    d = rt.settings.dingtalk
    key = (d.callback_token, d.callback_aes_key, d.corp_id, d.timestamp_tolerance, rt.clock)
    cached = getattr(app.state, "dingtalk_crypto", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    crypto = EventCrypto(d.callback_token, d.callback_aes_key, d.corp_id, tolerance=d.timestamp_tolerance,
                         clock=rt.clock)
    app.state.dingtalk_crypto = (key, crypto)
    return crypto


# --- JSON models --------------------------------------------------------------------------------
class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)


class _Text(_In):
    content: PlatformText | None = Field(default=None, max_length=20000)


class RobotMessage(_In):
    """The robot callback as far as Qunzhi reads it (field names as ``dingtalk_stream.ChatbotMessage``)."""
    msgId: PlatformId | None = Field(default=None, max_length=MSG_ID_MAX)
    msgtype: str | None = Field(default=None, max_length=32)
    conversationType: str | None = Field(default=None, max_length=4)
    conversationId: PlatformId | None = Field(default=None, max_length=GROUP_ID_MAX)
    conversationTitle: PlatformText | None = Field(default=None, max_length=256)
    senderStaffId: PlatformId | None = Field(default=None, max_length=USER_ID_MAX)
    senderNick: PlatformText | None = Field(default=None, max_length=256)
    isInAtList: bool | None = None
    robotCode: PlatformId | None = Field(default=None, max_length=128)
    createAt: int | None = None
    text: _Text | None = None


class CardCallback(_In):
    outTrackId: PlatformId | None = Field(default=None, max_length=512)
    userId: PlatformId | None = Field(default=None, max_length=USER_ID_MAX)
    corpId: PlatformId | None = Field(default=None, max_length=128)
    type: str | None = Field(default=None, max_length=64)
    content: str | None = Field(default=None, max_length=20000)


class _Actions(_In):
    actionIds: list[PlatformId] | None = Field(default=None, max_length=20)
    params: dict[str, Any] | None = None


class _Private(_In):
    cardPrivateData: _Actions | None = None


class GroupEvent(_In):
    EventType: str | None = Field(default=None, max_length=64)
    OpenConversationId: PlatformId | None = Field(default=None, max_length=GROUP_ID_MAX)
    ChatId: PlatformId | None = Field(default=None, max_length=GROUP_ID_MAX)
    Operator: PlatformId | None = Field(default=None, max_length=USER_ID_MAX)
    UserId: list[PlatformId] | None = Field(default=None, max_length=1000)
    Title: PlatformText | None = Field(default=None, max_length=256)
    TimeStamp: int | str | None = None


def _validate(model, data: Any, what: str):
    if not isinstance(data, dict):
        raise Malformed(f"{what}: not a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "body"
        raise Malformed(f"{what} field {where}: {first.get('msg')} ({e.error_count()} error(s))") from None




def _seconds(ms: Any) -> int | None:
    if ms is None or ms == "":
        return None
    if isinstance(ms, bool) or not isinstance(ms, (int, str)) or (isinstance(ms, str) and not ms.isdigit()):
        raise Malformed("time is not a unix time in milliseconds")
    return int(ms) // 1000


def strip_mention(text: str) -> str:
    return _LEADING_MENTIONS.sub("", text or "", count=1).strip()


# --- JSON → Event ---------------------------------------------------------------------------------
# DingTalk's ids are stored scoped (``dingtalk:<userid>``, ``dingtalk:<openConversationId>``,
# ``storage.repo.scoped_id``) as the roster, 建群 and the lifecycle store them: a DingTalk userid
# equal to a WeCom userid is never that WeCom person; the sender is given the raw ids back.
def _group(conversation_id: str | None) -> str | None:
    return scoped_id(PLATFORM, conversation_id) if conversation_id else None


def to_event(data: dict[str, Any], now: datetime, *, tolerance: int) -> Event | None:
    """A robot message as a neutral event (None for what the bot ignores); ``Malformed`` for JSON
    that does not fit and for a ``createAt`` far from ``now``."""
    m = _validate(RobotMessage, data, "robot message")
    sender, msgid = m.senderStaffId or "", m.msgId or ""
    if not sender or not msgid:
        return None
    at = check_event_time(_seconds(m.createAt), now, tolerance, "createAt")
    in_group = m.conversationType == "2"
    if m.msgtype != "text":
        log.info("ignoring dingtalk robot msgtype=%r", m.msgtype)
        return None
    text = (m.text.content if m.text else None) or ""
    return Event(platform=PLATFORM, kind="message", sender_id=scoped_id(PLATFORM, sender), at=at,
                 text=strip_mention(text) if in_group else text.strip(),
                 group_id=_group(m.conversationId) if in_group else None, msg_id=msgid,
                 mentioned_bot=in_group and m.isInAtList is not False,
                 group_name=(m.conversationTitle or None) if in_group else None,
                 data={"robot_code": m.robotCode})


def card_event(data: dict[str, Any], now: datetime) -> Event | None:
    """A card click (``actionCallback``) as ``Event(kind="card_click")``."""
    c = _validate(CardCallback, data, "card callback")
    if not c.userId or not c.outTrackId:
        return None
    try:
        private = _validate(_Private, json.loads(c.content or "{}"), "card callback content")
    except (ValueError, RecursionError):
        raise Malformed("card callback content is not JSON") from None
    actions = (private.cardPrivateData.actionIds if private.cardPrivateData else None) or []
    params = (private.cardPrivateData.params if private.cardPrivateData else None) or {}
    event_key = str(actions[0]) if actions else str(params.get("key") or "")
    task_id = c.outTrackId.split("|", 1)[0]
    return Event(platform=PLATFORM, kind="card_click", sender_id=scoped_id(PLATFORM, c.userId), at=now,
                 msg_id=f"card:{c.outTrackId}:{event_key}"[:MSG_ID_MAX],
                 data={"event_key": event_key, "task_id": task_id, "card_type": "button_interaction",
                       "response_code": CARD_PREFIX + c.outTrackId, "selected": [],
                       "card_kind": card_kind(task_id, event_key)})


_GROUP_EVENTS = {"chat_add_member": "member_joined", "chat_remove_member": "member_left", "chat_quit": "member_left",
                 "chat_update_title": "group_renamed"}


def group_event(data: dict[str, Any], now: datetime, *, tolerance: int) -> Event | None:
    e = _validate(GroupEvent, data, "event")
    kind = _GROUP_EVENTS.get(e.EventType or "")
    gid = e.OpenConversationId or e.ChatId
    if kind is None or not gid:
        if e.EventType not in ("check_url", None):
            log.info("ignoring dingtalk event %r", e.EventType)
        return None
    at = check_event_time(_seconds(e.TimeStamp), now, tolerance, "TimeStamp")
    members = tuple(scoped_id(PLATFORM, u) for u in e.UserId or ())
    operator = scoped_id(PLATFORM, e.Operator) if e.Operator else None
    return Event(platform=PLATFORM, kind=kind, sender_id=operator or (members[0] if members else ""), at=at,
                 group_id=scoped_id(PLATFORM, gid), group_name=e.Title if kind == "group_renamed" else None, member_ids=members,
                 msg_id=f"evt:{e.EventType}:{gid}:{e.TimeStamp}:{','.join(members)}"[:MSG_ID_MAX])


# --- endpoints ----------------------------------------------------------------------------------
def _refuse(e: CallbackError, what: str) -> PlainTextResponse:
    log.warning("dingtalk %s refused (%s): %s", what, e.status, e.reason)
    return PlainTextResponse("签名校验失败" if e.status == 403 else "请求格式错误", status_code=e.status)


def _not_configured() -> PlainTextResponse:
    return PlainTextResponse("未配置钉钉应用", status_code=404)


def passive(replies: list[Reply]) -> dict | None:
    """The response-body reply for exactly one short plain text, else None (the outbox)."""
    if len(replies) != 1:
        return None
    r = replies[0]
    if r.card is not None or not r.text or len(r.text) > PASSIVE_TEXT_MAX:
        return None
    if r.markdown:
        return {"msgtype": "markdown", "markdown": {"title": r.text.split("\n", 1)[0][:40] or "群治", "text": r.text}}
    return {"msgtype": "text", "text": {"content": r.text}}


async def handle_robot(rt, data: dict[str, Any], *, parse: Callable = to_event) -> dict | Response | None:
    """A verified robot message or card click: dispatch; the passive reply (dict), a Response
    (503 deadline, 200 nothing to say), or None once the replies went to the outbox."""
    now = rt.clock()
    event = parse(data, now) if parse is card_event else parse(data, now, tolerance=rt.settings.dingtalk.timestamp_tolerance)
    replies = await dispatch(rt, event, CHANNEL)
    if isinstance(replies, Response):
        return replies
    body = passive(replies) if event.kind == "message" else None
    if body is not None:
        return body
    await enqueue_replies(rt, event, replies, channel=CHANNEL, recipient=event.sender_id)
    return None


async def _signed(request: Request, parse: Callable, what: str) -> Response:
    rt = inbox(request.app)
    d = rt.settings.dingtalk
    if not d.configured:
        return _not_configured()
    raw = await request.body()
    try:
        verify_robot(request.headers.get("timestamp"), request.headers.get("sign"), d.app_secret, rt.clock(),
                     d.timestamp_tolerance)
        out = await handle_robot(rt, json_object(raw), parse=parse)
    except CallbackError as e:
        return _refuse(e, what)
    if isinstance(out, Response):
        return out
    return JSONResponse(out if out is not None else {})


@router.post("/dingtalk/robot")
async def robot_callback(request: Request) -> Response:
    return await _signed(request, to_event, "robot callback")


@router.post("/dingtalk/card")
async def card_callback(request: Request) -> Response:
    return await _signed(request, card_event, "card callback")


@router.post("/dingtalk/events")
async def events_callback(request: Request) -> Response:
    rt = inbox(request.app)
    d = rt.settings.dingtalk
    if not d.events:
        return _not_configured()
    crypto = _event_crypto(request.app)
    q = request.query_params
    try:
        encrypt = json_object(await request.body()).get("encrypt")
        if not isinstance(encrypt, str):
            raise Malformed("no encrypt field")
        data = json_object(crypto.verify_and_decrypt(q.get("signature") or q.get("msg_signature"), q.get("timestamp"),
                                                      q.get("nonce"), encrypt))
        event = group_event(data, rt.clock(), tolerance=d.timestamp_tolerance)
    except CallbackError as e:
        return _refuse(e, "event callback")
    if event is not None:
        res = await dispatch(rt, event, CHANNEL)
        if isinstance(res, Response) and res.status_code == 503:
            return res
    return JSONResponse(crypto.answer("success"))
