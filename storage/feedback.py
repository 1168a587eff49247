"""Anonymous feedback: the pulse (负担脉搏), "this group is useless" votes (这个群没用) and
formalism reports (反映).

Anonymity rules kept here:

* A response row holds a keyed pseudonym ``HMAC(pseudonym_secret, purpose|scope|person)``
  that only prevents double voting; no table maps it back to a person.
* Rows get a random primary key (not a sequence), and pulse rows carry the Monday of the week,
  not the day: neither the order nor the time of a row can be lined up with ``pulse_asks``,
  ``processed_events`` or the outbox to guess who answered.
* Unit results are shown only from ``MIN_RESPONSES`` (5) answers up.
"""
from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage import premises, repo
from storage.models import FindingRecord, FormalismReport, Group, Person, PulseAsk, PulseResponse, UselessVote
from storage.outbox import notify

MIN_RESPONSES = 5
PULSE_LABELS = {1: "轻", 2: "适中", 3: "重"}
PULSE_EVERY = timedelta(days=14)
PULSE_ANSWER_WINDOW = timedelta(days=3)


def pseudonym(secret: bytes, purpose: str, scope: str, person_id: str) -> str:
    return hmac.new(secret, f"{purpose}|{scope}|{person_id}".encode(), hashlib.sha256).hexdigest()


def _random_id() -> int:
    return secrets.randbits(52) + 1  # fits bigint and JS numbers; random so order says nothing


def _monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


# --- pulse -----------------------------------------------------------------------------------
def pulse_period(local_day: date) -> str:
    y, w, _ = local_day.isocalendar()
    return f"{y}-W{w:02d}"


def record_pulse(session: Session, *, secret: bytes, person: Person, value: int, local_day: date) -> bool:
    """Store one answer (1 light, 2 moderate, 3 heavy); False if this person already answered this period."""
    if value not in PULSE_LABELS:
        raise ValueError("pulse value must be 1, 2 or 3")
    period = pulse_period(local_day)
    new = repo.insert_ignore(session, PulseResponse, [{
        "id": _random_id(), "period": period, "unit": person.unit, "value": value,
        "voter_key": pseudonym(secret, "pulse", period, person.id), "day": _monday(local_day),
    }], ["period", "voter_key"])
    return new == 1


def recently_asked(session: Session, person_id: str, now: datetime, window: timedelta = PULSE_ANSWER_WINDOW) -> bool:
    ask = session.get(PulseAsk, person_id)
    return ask is not None and now - ask.asked_at <= window


@dataclass(frozen=True)
class PulseSummary:
    responses: int
    light: float
    moderate: float
    heavy: float


def pulse_summary(session: Session, period: str) -> dict[str | None, PulseSummary | None]:
    """Per unit for one period (e.g. ``2026-W48``); ``None`` for a unit with fewer than 5 answers."""
    counts: dict[str | None, dict[int, int]] = {}
    for unit, value, n in session.execute(select(PulseResponse.unit, PulseResponse.value, func.count())
                                          .where(PulseResponse.period == period)
                                          .group_by(PulseResponse.unit, PulseResponse.value)):
        counts.setdefault(unit, {})[value] = n
    out: dict[str | None, PulseSummary | None] = {}
    for unit, c in counts.items():
        total = sum(c.values())
        out[unit] = None if total < MIN_RESPONSES else PulseSummary(
            total, c.get(1, 0) / total, c.get(2, 0) / total, c.get(3, 0) / total)
    return out


# --- this group is useless -------------------------------------------------------------------
def useless_threshold(member_count: int, votes_min: int) -> int:
    """``votes_min`` votes or a third of the members, whichever comes first, but never fewer than 2
    (one vote in a two-person group would name the voter to the owner)."""
    third = math.ceil(member_count / 3) if member_count else votes_min
    return max(2, min(votes_min, third))


@dataclass(frozen=True)
class VoteResult:
    new: bool
    votes: int
    threshold: int
    review_asked: bool


def record_useless_vote(session: Session, *, secret: bytes, group: Group, person_id: str, now: datetime,
                        local_day: date, votes_min: int) -> VoteResult:
    new = repo.insert_ignore(session, UselessVote, [{
        "id": _random_id(), "group_id": group.id, "voter_key": pseudonym(secret, "useless", group.id, person_id),
        "day": _monday(local_day),
    }], ["group_id", "voter_key"]) == 1
    votes = session.execute(select(func.count()).where(UselessVote.group_id == group.id)).scalar_one()
    threshold = useless_threshold(group.member_count, votes_min)
    review = False
    if new and votes >= threshold:
        review = True
        _useless_finding(session, group, votes, now)
        if group.owner_id:
            notify(session, person_id=group.owner_id, kind="useless_review", group_id=group.id, at=now,
                   text=f"有{votes}位成员匿名反映“{group.name}”没有用处。请看看是否还需要它："
                        f"不需要可回复“完成 {group.name}”，需要请回复“保留 {group.name} 理由”。",
                   dedupe_key=f"useless_review:{group.id}:{_monday(local_day)}",
                   premise=premises.of("useless_review", group))
    return VoteResult(new, votes, threshold, review)


def _useless_finding(session: Session, group: Group, votes: int, now: datetime) -> None:
    """Kind ``useless`` in the findings table (dashboard and digest), never in ``qunzhi scan`` output."""
    key = f"useless:{group.id}"
    row = session.execute(select(FindingRecord).where(FindingRecord.key == key)).scalar_one_or_none()
    reasons = [f"{votes}位成员匿名认为此群没用"]
    if row is None:
        repo.insert_ignore(session, FindingRecord, [{
            "key": key, "kind": "useless", "group_ids": [group.id], "person_ids": [], "score": float(votes),
            "action": "review", "reasons": reasons, "status": "open", "first_seen": now, "last_seen": now,
        }], ["key"])
    else:
        row.score, row.reasons, row.last_seen, row.status = float(votes), reasons, now, "open"


# --- formalism reports -----------------------------------------------------------------------
def record_formalism_report(session: Session, *, text: str, now: datetime, local_day: date) -> int:
    """Store the report without any identity and notify every commission member."""
    rid = _random_id()
    session.add(FormalismReport(id=rid, day=local_day, text=text, forwarded=True))
    commission = session.execute(select(Person.id).where(Person.role == "commission")).scalars().all()
    for pid in commission:
        notify(session, person_id=pid, kind="formalism", at=now, text=f"匿名反映（形式主义）：{text}",
               dedupe_key=f"formalism:{rid}:{pid}")
    return len(commission)
