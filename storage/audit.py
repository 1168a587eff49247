"""Hash-chained audit trail (审计留痕 of the bot's own actions, not of cadres).

Each record's ``hash`` is sha256(prev_hash + canonical JSON of the record), so editing a
record breaks its own hash and removing one breaks the next record's ``prev_hash``.
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from storage.models import AuditRecord

GENESIS = "0" * 64
_local_lock = threading.Lock()
_PG_LOCK_KEY = 727275


def _canonical(at: datetime, actor: str, action: str, group_id: str | None, reason: str | None,
               data: dict | None) -> str:
    at_utc = at.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")
    return json.dumps(
        {"at": at_utc, "actor": actor, "action": action, "group_id": group_id, "reason": reason,
         "data": data or {}},
        ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str,
    )


def compute_hash(prev_hash: str, at, actor, action, group_id, reason, data) -> str:
    payload = prev_hash + _canonical(at, actor, action, group_id, reason, data)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def record(session: Session, *, actor: str, action: str, at: datetime, group_id: str | None = None,
           reason: str | None = None, data: dict[str, Any] | None = None) -> AuditRecord:
    """Append one record in the caller's transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        prev = session.execute(select(AuditRecord.hash).order_by(AuditRecord.id.desc()).limit(1)).scalar()
        return _append(session, prev, actor, action, at, group_id, reason, data)
    with _local_lock:
        session.flush()
        prev = session.execute(select(AuditRecord.hash).order_by(AuditRecord.id.desc()).limit(1)).scalar()
        return _append(session, prev, actor, action, at, group_id, reason, data)


def _append(session, prev, actor, action, at, group_id, reason, data) -> AuditRecord:
    prev = prev or GENESIS
    data = json.loads(json.dumps(data or {}, ensure_ascii=False, default=str))
    rec = AuditRecord(at=at, actor=actor, action=action, group_id=group_id, reason=reason, data=data,
                      prev_hash=prev, hash=compute_hash(prev, at, actor, action, group_id, reason, data))
    session.add(rec)
    session.flush()
    return rec


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: str | None = None  # Chinese explanation


def verify(session: Session, batch: int = 5000) -> VerifyResult:
    """Walk the chain; name the first record that was altered, or after which one was removed."""
    prev = GENESIS
    checked = 0
    last_id = 0
    while True:
        rows = session.execute(
            select(AuditRecord).where(AuditRecord.id > last_id).order_by(AuditRecord.id).limit(batch)
        ).scalars().all()
        if not rows:
            return VerifyResult(True, checked)
        for r in rows:
            if r.prev_hash != prev:
                return VerifyResult(False, checked, r.id,
                                    f"第{r.id}条记录之前的记录被删除或改动（上一条哈希不连续）")
            if compute_hash(r.prev_hash, r.at, r.actor, r.action, r.group_id, r.reason, r.data) != r.hash:
                return VerifyResult(False, checked, r.id, f"第{r.id}条记录内容被改动（哈希不符）")
            prev = r.hash
            checked += 1
            last_id = r.id
        session.expunge_all()
