"""Helpers the platform adapters share: safe XML, times, and queueing replies in the outbox."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any
from urllib.parse import parse_qsl
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from starlette.concurrency import run_in_threadpool
from defusedxml.ElementTree import fromstring

from platforms.wecom.crypto import Malformed
from pydantic import AfterValidator

from governance.events import Event, Reply
from platforms.base import DeadlineMissed, Inbox
from storage.outbox import enqueue

log = logging.getLogger("qunzhi.adapters")

_CONTROL = frozenset(chr(c) for c in (*range(0x20), 0x7f))


def _no_control(value: str) -> str:
    """An id: no control characters (PostgreSQL refuses NUL in text; a line break or a tab in an
    id is never a real platform id)."""
    if any(ch in _CONTROL for ch in value):
        raise ValueError("id contains a control character")
    return value


def _strip_nul(value: str) -> str:
    """Free text: NUL removed (PostgreSQL cannot store it; it is never part of what was typed)."""
    return value.replace("\x00", "") if "\x00" in value else value


# Field types for the adapters' pydantic models of what a platform sends.
PlatformId = Annotated[str, AfterValidator(_no_control)]
PlatformText = Annotated[str, AfterValidator(_strip_nul)]


def query(request) -> dict[str, str]:
    """The query string as a plain dict, the last value winning as in Starlette's ``QueryParams``
    (whose multi-dict costs more than the whole signature check on the busiest endpoints)."""
    return query_of(request.scope)


def query_of(scope) -> dict[str, str]:
    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))


class raw_endpoint:  # noqa: N801 (used like a decorator-style function)
    """An ASGI endpoint for ``handle(app, query, body) -> Response``: the body read straight from
    ``receive``, no Request object, no per-request wrappers. Used for the platform callbacks in
    ``FAST_ROUTES`` (mounted first by bot/routes.py); errors still reach the app's exception middleware. (A class,
    not a function: Starlette wraps a plain function endpoint as request → response.)"""

    def __init__(self, handle):
        self.handle = handle

    async def __call__(self, scope, receive, send) -> None:
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away before sending its body: nothing to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        response = await self.handle(scope["app"], query_of(scope), b"".join(chunks))
        await response(scope, receive, send)


def parse_xml(data: bytes | str) -> Element:
    """Parse untrusted XML: DTDs, entity declarations and external references are refused."""
    try:
        return fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, ParseError, ValueError) as e:
        raise Malformed(f"malformed or unsafe XML: {type(e).__name__}") from None


def xml_fields(root: Element) -> dict[str, str]:
    """The text of the root's direct children (``<xml><A>1</A></xml>`` → ``{"A": "1"}``)."""
    return {child.tag: (child.text or "").strip() for child in root}


def from_unix(value: Any, default: datetime) -> datetime:
    """A unix time as an aware UTC datetime (``default`` when absent or not a number)."""
    try:
        return datetime.fromtimestamp(int(value), tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return default


# Event times the platforms send are checked against the server clock before dispatch: a time more
# than the callback tolerance (``QUNZHI_WECOM_TIMESTAMP_TOLERANCE``, 300 s) ahead, or older than
# ``MAX_EVENT_AGE``, is refused with 400. A far-future time would keep a group alive forever and
# sit in the append-only audit chain; a live callback (WeCom retries within minutes, a bridge
# catches up after an outage) is never a week old. Imported archives have their own bounds
# (``storage.importers``).
MAX_EVENT_AGE = timedelta(days=7)


def event_time_problem(at: datetime, now: datetime, tolerance: int) -> str | None:
    """None if ``at`` is plausible for a live callback received at ``now``, else the reason (English)."""
    if at > now + timedelta(seconds=tolerance):
        return f"event time {at.isoformat()} is more than {tolerance}s ahead of the server clock {now.isoformat()}"
    if at < now - MAX_EVENT_AGE:
        return f"event time {at.isoformat()} is more than {MAX_EVENT_AGE.days} days before {now.isoformat()}"
    return None


def check_event_time(value: Any, now: datetime, tolerance: int, field: str) -> datetime:
    """The unix time ``value`` as an aware datetime (``now`` when absent); ``Malformed`` when it is
    not a unix time or is implausible for a live callback (``event_time_problem``)."""
    if value is None or value == "":
        return now
    at = from_unix(value, None)
    if at is None or isinstance(value, bool):
        raise Malformed(f"{field} is not a unix time")
    problem = event_time_problem(at, now, tolerance)
    if problem:
        raise Malformed(f"{field}: {problem}")
    return at


def card_kind(task_id: str, event_key: str) -> str:
    """Cards are issued with a task id (or button key) ``<kind>:<rest>``; the kind picks the handler."""
    for value in (task_id, event_key):
        if value:
            return value.split(":", 1)[0]
    return ""


def reply_payload(reply: Reply) -> dict[str, Any]:
    return {"text": reply.text, "card": reply.card, "markdown": reply.markdown}


async def enqueue_replies(runtime, event: Event, replies: list[Reply], *, channel: str, recipient: str,
                          extra: dict[str, Any] | None = None) -> int:
    """Queue replies that cannot be answered passively (idempotent per event and position).
    The database write runs in the thread pool, not on the event loop."""
    if not replies:
        return 0
    return await run_in_threadpool(_enqueue_replies, runtime, event, replies, channel=channel,
                                   recipient=recipient, extra=extra)


def _enqueue_replies(runtime, event: Event, replies: list[Reply], *, channel: str, recipient: str,
                     extra: dict[str, Any] | None) -> int:
    at = runtime.clock()
    with runtime.db.session() as s:
        for i, r in enumerate(replies):
            payload = reply_payload(r)
            if extra:
                payload.update(extra)
            key = f"reply:{event.dedupe_key}:{i}" if event.dedupe_key else None
            enqueue(s, channel=channel, recipient=recipient, kind="reply", payload=payload, at=at, dedupe_key=key)
    return len(replies)


def inbox(app) -> Inbox:
    """Where the adapters hand their events: the web app's runtime (``platforms.base.Inbox``)."""
    return app.state.runtime


async def dispatch(rt: Inbox, event: Event | None, channel: str):
    """Hand a parsed event to the runtime. Returns the replies to answer with, or the Response to
    send when there is nothing to answer: 200 for an ignored or reply-less event, 503 when the
    platform's reply deadline passed before the event was stored (WeCom retries; the dedupe
    absorbs it)."""
    from starlette.responses import Response

    if event is None:
        return Response(status_code=200)
    try:
        replies = await rt.process_async(event, reply_channel=channel)
    except DeadlineMissed:  # not stored yet: nothing may be acknowledged; late replies go via the outbox
        return Response(status_code=503)
    return replies or Response(status_code=200)


def json_object(raw: bytes | str) -> dict[str, Any]:
    """A callback body that must be one JSON object (``Malformed`` otherwise, a 400)."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise Malformed("body is not JSON") from None
    if not isinstance(value, dict):
        raise Malformed("body is not a JSON object")
    return value
