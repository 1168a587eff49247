"""Writing to the outbox (the dispatcher in scheduler/ sends what is written here)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.models import Notice, OutboxMessage
from storage.repo import NATIVE_CHANNELS, bridge_platform, insert_ignore

# Statuses of an outbox row that never reached anyone (its notices can be treated as not sent).
NOT_DELIVERED = ("withdrawn", "cancelled", "dead", "unreachable")


def person_channel(person_id: str) -> str:
    """The outbox channel that reaches a person on their own platform: ``bridge`` for a person of
    a bridge platform (stored scoped, ``wechat:zhangsan``), else ``user`` (a WeCom userid: the
    self-built app's ``message/send``; an AI bot cannot message a person unprompted).

    The channel follows the stored id; where that channel has no sender in a deployment, the
    dispatcher reaches the person through another account of theirs (``storage.identity``,
    ``scheduler.outbox.Dispatcher._routes``)."""
    platform = bridge_platform(person_id)
    if platform in NATIVE_CHANNELS:  # a Feishu person (feishu:ou_…): the Feishu app's channel
        return NATIVE_CHANNELS[platform]
    return "bridge" if platform else "user"


def enqueue(session: Session, *, channel: str, recipient: str, kind: str, payload: dict[str, Any],
            at: datetime, dedupe_key: str | None = None, not_before: datetime | None = None) -> None:
    """Queue one outgoing message in the caller's transaction (idempotent by ``dedupe_key``)."""
    row = {"created_at": at, "channel": channel, "recipient": recipient, "kind": kind, "payload": payload,
           "dedupe_key": dedupe_key, "status": "pending", "attempts": 0, "not_before": not_before,
           "next_attempt_at": not_before or at}
    if dedupe_key:
        insert_ignore(session, OutboxMessage, [row], ["dedupe_key"])
    else:
        session.add(OutboxMessage(**row))


def notify(session: Session, *, person_id: str, kind: str, text: str, at: datetime, due_at: datetime | None = None,
           group_id: str | None = None, urgent: bool = False, dedupe_key: str | None = None,
           premise: dict[str, Any] | None = None) -> None:
    """Queue a notice for one person; the scheduler merges a person's notices into one digest,
    sends them only in working time and within the weekly attention budget.

    ``premise``: what the notice assumes about its group (``storage.premises.of``); checked again
    when it is put into a digest and right before it is sent."""
    row = {"person_id": person_id, "kind": kind, "group_id": group_id, "text": text, "urgent": urgent,
           "due_at": due_at or at, "created_at": at, "dedupe_key": dedupe_key, "status": "pending",
           "premise": premise}
    if dedupe_key:
        insert_ignore(session, Notice, [row], ["dedupe_key"])
    else:
        session.add(Notice(**row))


def counts_by_status(session: Session) -> dict[str, int]:
    """Outbox rows per status (``/metrics``)."""
    return dict(session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all())
