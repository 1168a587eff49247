"""WeCom self-built app callback (企业微信自建应用 接收消息与事件): ``GET/POST /wecom/callback``.

Verify (see ``platforms.wecom.crypto``), decrypt, parse the XML into a neutral ``Event``, dispatch,
and answer within WeCom's five seconds:

* exactly one short plain-text reply → an encrypted passive XML reply (``TextReply``, same nonce
  and timestamp as the request);
* several replies, a card, markdown or a long text → HTTP 200 with an empty body, and the
  replies are queued in the outbox (``channel="user"``) for the dispatcher;
* a handler that misses the deadline → HTTP 503: nothing is acknowledged before it is stored,
  so WeCom retries (the retry is a duplicate once the first attempt commits); the runtime queues
  the first attempt's replies in the outbox when it finishes.

Status codes: 403 forged / stale (timestamp outside the window) / receive id not ours, 400
malformed XML (including DTDs, entity expansion and external entities), malformed ciphertext, an
id longer than its column or a ``CreateTime`` far from the server clock, 413 body too large
(``BodyLimitMiddleware``), 404 when WeCom is not configured.

Retries: WeCom resends a request it got no answer to (up to three times), possibly with the same
query string and body, so a repeated nonce is no refusal. Messages are deduplicated by ``MsgId``
and events by ``FromUserName + CreateTime`` (``msg_id = "evt:{from}:{createtime}:{event}"``) in
the database (``processed_events``): that is the replay defence. A repeat of a stored request
changes nothing and is answered with the same passive reply as the first attempt (an empty 200
if the first attempt's replies went to the outbox); a repeat of one never stored (its first
attempt got 503 or 500) is processed.
"""
from __future__ import annotations

import logging
from datetime import datetime
from xml.etree.ElementTree import Element

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from wechatpy.replies import TextReply

from platforms.common import (card_kind, check_event_time, dispatch, enqueue_replies, from_unix, inbox, parse_xml,
                                query, raw_endpoint, xml_fields)
from platforms.wecom.crypto import CallbackCrypto, CallbackError, Malformed, app_state_crypto
from governance.events import Event, Reply

log = logging.getLogger("qunzhi.wecom")

router = APIRouter()

PLATFORM = "wecom"
PASSIVE_TEXT_MAX_BYTES = 2048  # WeCom text messages are limited to 2048 bytes


def _crypto(app) -> CallbackCrypto:
    rt = inbox(app)
    s = rt.settings
    return app_state_crypto(app, "wecom", s.wecom_token, s.wecom_aes_key, s.wecom_corp_id,
                            tolerance=s.wecom_timestamp_tolerance, clock=rt.clock)


def _refuse(e: CallbackError) -> PlainTextResponse:
    log.warning("wecom callback refused (%s): %s", e.status, e.reason)
    return PlainTextResponse("签名校验失败" if e.status == 403 else "请求格式错误", status_code=e.status)


def _not_configured() -> PlainTextResponse:
    return PlainTextResponse("未配置企业微信应用", status_code=404)


@router.get("/wecom/callback")
async def verify_url(request: Request) -> Response:
    """URL verification: answer the decrypted echostr as plain text (no quotes, no newline)."""
    if not inbox(request.app).settings.wecom_configured:
        return _not_configured()
    q = query(request)
    try:
        echo = _crypto(request.app).verify_and_decrypt(q.get("msg_signature"), q.get("timestamp"), q.get("nonce"),
                                                   q.get("echostr"))
    except CallbackError as e:
        return _refuse(e)
    return PlainTextResponse(echo)


@router.post("/wecom/callback")
async def callback(request: Request) -> Response:
    return await handle(request.app, query(request), await request.body())


async def handle(app, q: dict[str, str], body: bytes) -> Response:
    """The callback without a Request: also served by ``raw_endpoint`` (``FAST_ROUTES``)."""
    rt = inbox(app)
    if not rt.settings.wecom_configured:
        return _not_configured()
    crypto = _crypto(app)
    try:
        envelope = parse_xml(body)
        encrypt = (envelope.findtext("Encrypt") or "").strip()
        plain = crypto.verify_and_decrypt(q.get("msg_signature"), q.get("timestamp"), q.get("nonce"), encrypt)
        message = parse_xml(plain)
        event = to_event(message, rt.clock(), tolerance=rt.settings.wecom_timestamp_tolerance)
    except CallbackError as e:
        return _refuse(e)

    replies = await dispatch(rt, event, "user")
    if isinstance(replies, Response):
        return replies
    if _passive(replies):
        fields = xml_fields(message)
        reply = TextReply(source=fields.get("ToUserName", ""), target=event.sender_id,
                          content=replies[0].text, time=int(rt.clock().timestamp()))
        body = crypto.encrypt_xml(reply.render(), q.get("nonce", ""), q.get("timestamp", ""))
        return Response(body, media_type="application/xml")
    await enqueue_replies(rt, event, replies, channel="user", recipient=event.sender_id)
    return Response(status_code=200)


def _passive(replies: list[Reply]) -> bool:
    if len(replies) != 1:
        return False
    r = replies[0]
    return r.card is None and not r.markdown and 0 < len(r.text.encode()) <= PASSIVE_TEXT_MAX_BYTES


# The callback is the busiest endpoint: also routed first, as a plain ASGI endpoint (bot/routes.py).
FAST_ROUTES = [("/wecom/callback", raw_endpoint(handle), ["POST"])]


# --- XML → Event ----------------------------------------------------------------------------
# Ids longer than the columns they end up in are refused (400) before dispatch, on every database
# (SQLite would store them whole, PostgreSQL would fail the batch): persons.id is 64; the dedupe
# key ``wecom:evt:<from>:<time>:<event>`` must fit processed_events.key (200) with room for the
# outbox's ``reply:…:n`` keys.
USER_ID_MAX = 64
MSG_ID_MAX = 64       # MsgId is a 64-bit number (20 digits); 64 leaves room
EVENT_NAME_MAX = 64
CREATE_TIME_MAX = 12  # digits, as the query string's timestamp


def to_event(root: Element, now: datetime, *, tolerance: int | None = None) -> Event | None:
    """Map a decrypted WeCom message to a neutral event (None for what the bot ignores);
    ``Malformed`` for ids that do not fit their columns, and (given the callback ``tolerance``)
    for a ``CreateTime`` far from ``now`` (``common.check_event_time``)."""
    f = xml_fields(root)
    sender = f.get("FromUserName", "")
    if not sender:
        return None
    created = f.get("CreateTime", "")
    for field, limit in (("FromUserName", USER_ID_MAX), ("MsgId", MSG_ID_MAX), ("Event", EVENT_NAME_MAX),
                         ("CreateTime", CREATE_TIME_MAX)):
        if len(f.get(field, "")) > limit:
            raise Malformed(f"{field} longer than {limit} characters")
    at = from_unix(created, now) if tolerance is None else check_event_time(created, now, tolerance, "CreateTime")
    msg_type = f.get("MsgType", "")
    base = {"agent_id": f.get("AgentID", "")}
    if msg_type == "text":
        return Event(platform=PLATFORM, kind="message", sender_id=sender, at=at, text=f.get("Content", ""),
                     group_id=None, msg_id=f.get("MsgId") or f"msg:{sender}:{created}", data=base)
    if msg_type != "event":
        log.info("ignoring wecom message type %r", msg_type)
        return None
    name = f.get("Event", "")
    msg_id = f"evt:{sender}:{created}:{name}"
    if name == "template_card_event":
        return Event(platform=PLATFORM, kind="card_click", sender_id=sender, at=at, msg_id=msg_id,
                     data={**base, **parse_card_event(root)})
    if name == "enter_agent":
        return Event(platform=PLATFORM, kind="enter_chat", sender_id=sender, at=at, msg_id=msg_id, data=base)
    if name == "click" and f.get("EventKey"):
        # a menu button whose key is a command, e.g. 我的群
        return Event(platform=PLATFORM, kind="message", sender_id=sender, at=at, text=f["EventKey"], msg_id=msg_id,
                     data={**base, "menu": True})
    log.info("ignoring wecom event %r", name)
    return None


def parse_card_event(root: Element) -> dict:
    """``template_card_event`` (wechatpy leaves it unparsed): key, task, type, response code, choices."""
    event_key = (root.findtext("EventKey") or "").strip()
    task_id = (root.findtext("TaskId") or "").strip()
    selected = []
    for item in root.iterfind("SelectedItems/SelectedItem"):
        selected.append({
            "question_key": (item.findtext("QuestionKey") or "").strip(),
            "option_ids": [(o.text or "").strip() for o in item.iterfind("OptionIds/OptionId")],
        })
    return {"event_key": event_key, "task_id": task_id, "card_type": (root.findtext("CardType") or "").strip(),
            "response_code": (root.findtext("ResponseCode") or "").strip(), "selected": selected,
            "card_kind": card_kind(task_id, event_key)}
