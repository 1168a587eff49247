"""Bridge for platforms without an official API (personal WeChat groups): ``POST /bridge/events``.

A bridge process that sits in the groups posts signed JSON events; see ``platforms/bridge/BRIDGE.md``.

Signature (both directions)::

    X-Qunzhi-Timestamp: <unix seconds, decimal>
    X-Qunzhi-Signature: hex(HMAC-SHA256(key=BRIDGE_SECRET (UTF-8),
                                        msg=timestamp (ASCII) + b"." + raw request body bytes))

lower-case hex, 64 characters. The raw body bytes are signed exactly as sent (no
re-serialisation). The timestamp must be within ``wecom_timestamp_tolerance`` seconds of the
server clock. Comparison is constant time. Replays inside the window are harmless: events are
deduplicated by their ``id``, and a repeat stores nothing and is answered with the replies of the
first attempt.

Answers: 200 ``{"ok": true, "replies": [{"text": ...}]}``; 503 ``{"ok": false, "retry": true}``
when the event could not be stored within the deadline (retry with the same id; the replies of
the first attempt are queued when it finishes); 403 bad or stale signature; 400
``{"ok": false, "error": "<中文说明>"}`` for a body that is not a valid event; 413 too large;
404 when ``BRIDGE_SECRET`` is not set.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from platforms.base import DeadlineMissed
from platforms.common import MAX_EVENT_AGE, PlatformId, PlatformText, enqueue_replies, event_time_problem, inbox
from governance.events import Event
from storage.repo import NOT_BRIDGED, scoped_id

log = logging.getLogger("qunzhi.bridge")

router = APIRouter()

TIMESTAMP_HEADER = "X-Qunzhi-Timestamp"
SIGNATURE_HEADER = "X-Qunzhi-Signature"

EVENT_TYPES = ("message", "member_joined", "member_left", "group_created", "group_renamed", "dissolve_confirmed")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``hex(HMAC-SHA256(secret, timestamp + "." + body))``."""
    return hmac.new(secret.encode(), timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(secret: str, timestamp: int | str, body: bytes) -> dict[str, str]:
    ts = str(int(timestamp))
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(secret, ts, body), "Content-Type": "application/json"}


def check_signature(secret: str, timestamp: str | None, signature: str | None, body: bytes, *, now: float,
                    tolerance: int) -> str | None:
    """None when valid, else the reason (for the log)."""
    if not secret:
        return "bridge not configured"
    if not timestamp or not signature:
        return "missing signature headers"
    if not timestamp.isdigit() or len(timestamp) > 12:
        return "timestamp is not a unix time"
    expected = sign(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode("ascii", "replace")):
        return "bad signature"
    if abs(now - int(timestamp)) > tolerance:
        return "timestamp outside the accepted window"
    return None


PERSON_ID_MAX = 64   # persons.id, memberships.person_id
GROUP_ID_MAX = 128   # groups.id


class BridgeEvent(BaseModel):
    """One event from the bridge (validated; unknown fields are refused)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: PlatformId = Field(min_length=1, max_length=128)
    type: Literal["message", "member_joined", "member_left", "group_created", "group_renamed",
                  "dissolve_confirmed"]
    platform: str = Field(default="wechat", min_length=1, max_length=16, pattern=r"^[a-z][a-z0-9_]*$")
    group_id: PlatformId | None = Field(default=None, max_length=128)
    group_name: PlatformText | None = Field(default=None, max_length=128)
    sender_id: PlatformId = Field(min_length=1, max_length=64)
    member_ids: list[PlatformId] = Field(default_factory=list, max_length=5000)
    text: PlatformText = Field(default="", max_length=10000)
    at: AwareDatetime
    mentioned_bot: bool = False
    instruction_id: PlatformId | None = Field(default=None, max_length=128)

    @model_validator(mode="after")
    def _group_needed(self):
        # Ids are stored scoped by platform (``wechat:zhangsan``): the scoped id must fit its
        # column (persons.id 64, groups.id 128) on every database.
        if self.platform in NOT_BRIDGED:
            raise ValueError(f"platform {self.platform!r} is not a bridge platform")
        room = len(self.platform) + 1
        if len(self.sender_id) + room > PERSON_ID_MAX:
            raise ValueError(f"sender_id too long: at most {PERSON_ID_MAX - room} characters")
        if any(not m.strip() or len(m) + room > PERSON_ID_MAX for m in self.member_ids):
            raise ValueError(f"member_ids: empty or too long: at most {PERSON_ID_MAX - room} characters")
        if self.group_id and len(self.group_id) + room > GROUP_ID_MAX:
            raise ValueError(f"group_id too long: at most {GROUP_ID_MAX - room} characters")
        if self.type != "message" and not self.group_id:
            raise ValueError("group_id is required for group events")
        if self.type == "group_renamed" and not self.group_name:
            raise ValueError("group_name is required for group_renamed")
        return self

    def to_event(self) -> Event:
        data = {"via": "bridge"}
        if self.instruction_id:
            data["instruction_id"] = self.instruction_id
        return Event(platform=self.platform, kind=self.type, sender_id=person_id(self.platform, self.sender_id),
                     at=self.at, text=self.text, group_id=group_id(self.platform, self.group_id) if self.group_id else None,
                     msg_id=f"bridge:{self.id}",
                     mentioned_bot=self.mentioned_bot, group_name=self.group_name,
                     member_ids=tuple(person_id(self.platform, m) for m in self.member_ids), data=data)


def person_id(platform: str, user_id: str) -> str:
    """Bridge users live in their platform's namespace (``wechat:zhangsan``): a WeChat id that
    happens to equal a WeCom userid must never act with that cadre's role or ownership."""
    return scoped_id(platform, user_id)


def group_id(platform: str, raw_group_id: str) -> str:
    """Bridge groups too (``wechat:wxg-1``): a bridge event naming a WeCom group's id never
    touches that group. Instructions to the bridge carry the raw id again (``BridgeSender``)."""
    return scoped_id(platform, raw_group_id)


_FIELD_NAMES = {"id": "事件编号 id", "type": "事件类型 type", "platform": "平台 platform", "group_id": "群编号 group_id",
                "group_name": "群名 group_name", "sender_id": "发送人 sender_id", "member_ids": "成员列表 member_ids",
                "text": "消息内容 text", "at": "时间 at", "mentioned_bot": "是否@机器人 mentioned_bot",
                "instruction_id": "指令编号 instruction_id"}


def _chinese_errors(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = err.get("loc") or ()
        field = _FIELD_NAMES.get(str(loc[0]), str(loc[0])) if loc else "请求体"
        kind = err.get("type", "")
        if kind == "missing":
            parts.append(f"缺少{field}")
        elif kind == "extra_forbidden":
            parts.append(f"不认识的字段 {loc[0] if loc else ''}")
        elif kind == "literal_error":
            parts.append(f"{field}只能是 " + "、".join(EVENT_TYPES))
        elif kind in ("timezone_aware", "datetime_parsing", "datetime_from_date_parsing", "datetime_type"):
            parts.append(f"{field}须为带时区的 ISO 8601 时间，例如 2026-11-23T10:00:00+08:00")
        elif kind == "value_error":
            msg = str(err.get("msg", ""))
            limit = re.search(r"at most (\d+)", msg)
            if "not a bridge platform" in msg:
                parts.append("平台 platform 不能是 " + "、".join(NOT_BRIDGED) + "（这些平台不经桥接）")
            elif limit and "sender_id" in msg:
                parts.append(f"发送人 sender_id 过长（最多 {limit.group(1)} 个字符）")
            elif limit and "member_ids" in msg:
                parts.append(f"成员列表 member_ids 中有空的或过长的编号（每个最多 {limit.group(1)} 个字符）")
            elif limit and "group_id" in msg:
                parts.append(f"群编号 group_id 过长（最多 {limit.group(1)} 个字符）")
            else:
                parts.append("群事件必须带群编号 group_id" if "group_id" in msg else
                             "改名事件必须带新群名 group_name" if "group_name" in msg else "字段取值不合法")
        elif kind in ("string_too_long", "too_long"):
            parts.append(f"{field}过长")
        else:
            parts.append(f"{field}格式不正确")
    return "；".join(parts) or "事件格式不正确"


def _bad(message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=400)


@router.post("/bridge/events")
async def bridge_events(request: Request) -> JSONResponse:
    rt = inbox(request.app)
    secret = rt.settings.bridge_secret
    if not secret:
        return JSONResponse({"ok": False, "error": "未配置桥接密钥"}, status_code=404)
    body = await request.body()
    reason = check_signature(secret, request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER),
                             body, now=rt.clock().timestamp(), tolerance=rt.settings.wecom_timestamp_tolerance)
    if reason:
        log.warning("bridge event refused: %s", reason)
        return JSONResponse({"ok": False, "error": "签名校验失败"}, status_code=403)
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        return _bad("请求体不是合法的 JSON")
    if not isinstance(raw, dict):
        return _bad("请求体必须是 JSON 对象")
    try:
        event = BridgeEvent.model_validate(raw).to_event()
    except ValidationError as e:
        return _bad(_chinese_errors(e))
    problem = event_time_problem(event.at, rt.clock(), rt.settings.wecom_timestamp_tolerance)
    if problem:
        log.warning("bridge event %s refused: %s", event.msg_id, problem)
        return _bad(f"时间 at 不可信：不得晚于服务器时间 {rt.settings.wecom_timestamp_tolerance} 秒以上，"
                    f"也不得早于 {MAX_EVENT_AGE.days} 天以前")
    try:
        replies = await rt.process_async(event, reply_channel="bridge")
    except DeadlineMissed:  # not stored yet: the bridge retries 5xx with the same id
        return JSONResponse({"ok": False, "error": "处理超时，请用同一 id 重试", "retry": True}, status_code=503)
    texts = [{"text": r.text} for r in replies if r.card is None]
    cards = [r for r in replies if r.card is not None]
    if cards:  # the bridge cannot show one-tap cards: they go out through the outbox as text
        await enqueue_replies(rt, event, cards, channel="bridge", recipient=event.group_id or event.sender_id)
    return JSONResponse({"ok": True, "replies": texts})


# --- instructions to the bridge ------------------------------------------------------------------
def dissolve_instruction(*, group_id: str, instruction_id: str, platform: str = "wechat", reason: str = "",
                         notice: str = "") -> dict:
    """The instruction the bridge receives to dissolve a group (the bridge answers later with an
    event ``type="dissolve_confirmed"`` carrying the same ``group_id`` and ``instruction_id``)."""
    return {"type": "dissolve", "group_id": group_id, "instruction_id": instruction_id, "platform": platform,
            "reason": reason, "notice": notice}
