"""Anonymous feedback: the pulse (负担脉搏), "this group is useless" votes (这个群没用) and
formalism reports (反映).

Anonymity rules kept here:

* A response row holds a keyed pseudonym ``HMAC(pseudonym_secret, salt|purpose|scope|person)``
  that only prevents double voting within its window; no table maps it back to a person.
* Each window has a random salt (``anon_salts``), kept only while the window is open: a pulse
  week (ISO week, local time), a group's useless-vote window (30 days from the first vote after
  the previous window closed, local midnights), a UTC day of anonymous dedupe keys (kept until
  the end of the next UTC day, so retries are still recognised). ``close_windows`` (the
  ``close_anonymous_windows`` job) deletes the salts of closed windows, replaces the voter keys
  of their rows with random values and deletes the anonymous dedupe rows: from then on neither
  the pseudonym key nor a full dump, nor both, attribute any vote.
* Rows get a random primary key (not a sequence), and pulse rows carry the Monday of the week,
  not the day: neither the order nor the time of a row can be lined up with ``pulse_asks``,
  ``processed_events`` or the outbox to guess who answered.
* Every row written with an anonymous answer (dedupe row, card update, notices, the useless
  finding) carries its day, never a finer time.
* Unit results and vote counts are shown only from ``MIN_RESPONSES`` (5) answers up.
"""
from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from governance import labels
from storage import premises, repo
from storage.models import (AnonSalt, FindingRecord, FormalismReport, Group, Message, OutboxMessage, Person, PulseAsk,
                            ProcessedEvent, PulseResponse, UselessVote)
from storage.outbox import notify

MIN_RESPONSES = 5
PULSE_EVERY = timedelta(days=14)
PULSE_ANSWER_WINDOW = timedelta(days=3)


def pulse_card(task_id: str) -> dict:
    """The template card (button_interaction) asking the pulse question (its buttons' keys,
    ``pulse:1..3``, come back as ``card:pulse`` clicks to handlers.commands.feedback)."""
    return {
        "card_type": "button_interaction",
        "main_title": {"title": "本周工作群给您带来的负担？", "desc": "匿名，不记名；点一下即可"},
        "task_id": task_id,
        "button_list": [{"text": word, "style": 1 if v == 3 else 2, "key": f"pulse:{v}"}
                        for v, word in labels.PULSE_ANSWERS.items()],
    }


PULSE_FALLBACK_TEXT = "本周工作群给您带来的负担？ 回复 1 轻 / 2 适中 / 3 重（匿名，不记名）"


USELESS_WINDOW = timedelta(days=30)
DEDUPE_PURPOSE = "dedupe"
SCRUBBED = "-"  # prefix of a voter key replaced by random bytes once its window closed


def pseudonym(secret: bytes, purpose: str, scope: str, person_id: str, salt: str = "") -> str:
    return hmac.new(secret, f"{salt}|{purpose}|{scope}|{person_id}".encode(), hashlib.sha256).hexdigest()


def _scrubbed_key() -> str:
    return SCRUBBED + secrets.token_hex(31)  # 63 random hex digits: no key, no salt, no person recomputes it


def _local_midnight(d: date, tz) -> datetime:
    return datetime.combine(d, datetime.min.time(), tzinfo=tz or timezone.utc).astimezone(timezone.utc)


def window_salt(session: Session, purpose: str, scope: str, period: str, closes_at: datetime) -> str:
    """The salt of one window, created (at random) with its first use."""
    key = (purpose, scope, period)
    row = session.get(AnonSalt, key)
    if row is None:
        repo.insert_ignore(session, AnonSalt, [{"purpose": purpose, "scope": scope, "period": period,
                                                 "salt": secrets.token_hex(32), "closes_at": closes_at}],
                           ["purpose", "scope", "period"])
        row = session.get(AnonSalt, key)
    return row.salt


def day_start(at: datetime) -> datetime:
    """``at`` truncated to its UTC day: the only time stored beside an anonymous dedupe key."""
    at = at.astimezone(timezone.utc)
    return datetime(at.year, at.month, at.day, tzinfo=timezone.utc)


def anonymous_dedupe_key(session: Session, secret: bytes, key: str, at: datetime) -> str:
    """The ``processed_events`` key of an anonymous event: salted with its UTC day's salt, so once
    that salt is gone even the pseudonym key cannot tell whose click or command it was."""
    day = day_start(at)
    salt = window_salt(session, DEDUPE_PURPOSE, "", day.date().isoformat(), day + timedelta(days=2))
    digest = hmac.new(secret, f"{salt}|dedupe|{key}".encode(), hashlib.sha256)
    return "anon:" + digest.hexdigest()


def _random_id() -> int:
    return secrets.randbits(52) + 1  # fits bigint and JS numbers; random so order says nothing


def _monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


# --- pulse -----------------------------------------------------------------------------------
def pulse_period(local_day: date) -> str:
    y, w, _ = local_day.isocalendar()
    return f"{y}-W{w:02d}"


def record_pulse(session: Session, *, secret: bytes, person: Person, value: int, local_day: date, tz=None) -> bool:
    """Store one answer (1 light, 2 moderate, 3 heavy); False if this person already answered this period.
    ``tz``: the local time zone (the week closes at local midnight of the next Monday)."""
    if value not in labels.PULSE_ANSWERS:
        raise ValueError("pulse value must be 1, 2 or 3")
    period = pulse_period(local_day)
    salt = window_salt(session, "pulse", "", period, _local_midnight(_monday(local_day) + timedelta(days=7), tz))
    new = repo.insert_ignore(session, PulseResponse, [{
        "id": _random_id(), "period": period, "unit": person.unit, "value": value,
        "voter_key": pseudonym(secret, "pulse", period, person.id, salt), "day": _monday(local_day),
    }], ["period", "voter_key"])
    return new == 1


def recently_asked(session: Session, person_id: str, now: datetime, window: timedelta = PULSE_ANSWER_WINDOW) -> bool:
    ask = session.get(PulseAsk, person_id)
    return ask is not None and now - ask.asked_at <= window


# --- this group is useless -------------------------------------------------------------------
FEW_VOTES = f"不足{MIN_RESPONSES}票"


def shown_votes(votes: int) -> int | None:
    """A vote count as it may be shown anywhere (dashboard, digest, exports, notices): only from
    ``MIN_RESPONSES`` votes up, the same k as the pulse; None below (show ``FEW_VOTES``)."""
    return votes if votes >= MIN_RESPONSES else None


def vote_count_words(votes: int) -> str:
    """"有N位成员" from k votes up, else "有成员" without a number."""
    return f"有{votes}位成员" if shown_votes(votes) is not None else "有成员"


def useless_threshold(member_count: int, votes_min: int) -> int:
    """``votes_min`` votes or a third of the members, whichever comes first, but never fewer than 2
    (one vote in a two-person group would name the voter to the owner)."""
    third = math.ceil(member_count / 3) if member_count else votes_min
    return max(2, min(votes_min, third))


def seen_in_group(session: Session, group_id: str, person_id: str) -> bool:
    """Whether the bot has seen ``person_id`` write in the group (for a group without a member list)."""
    return session.execute(select(Message.id).where(Message.group_id == group_id, Message.sender_id == person_id)
                           .limit(1)).first() is not None


@dataclass(frozen=True)
class VoteResult:
    new: bool
    votes: int
    threshold: int
    review_asked: bool


def _open_useless_window(session: Session, group_id: str, now: datetime) -> AnonSalt | None:
    return session.execute(select(AnonSalt).where(AnonSalt.purpose == "useless", AnonSalt.scope == group_id,
                                                  AnonSalt.closes_at > now)
                           .order_by(AnonSalt.closes_at.desc()).limit(1)).scalar_one_or_none()


def window_votes(session: Session, group_id: str, now: datetime) -> int:
    """The votes in the group's open window (0 when none is open)."""
    w = _open_useless_window(session, group_id, now)
    if w is None:
        return 0
    return session.execute(select(func.count()).where(UselessVote.group_id == group_id,
                                                      UselessVote.window_start == date.fromisoformat(w.period))
                           ).scalar_one()


def record_useless_vote(session: Session, *, secret: bytes, group: Group, person_id: str, now: datetime,
                        local_day: date, votes_min: int, tz=None) -> VoteResult:
    """One vote in the group's window: the open one, else one opened today for 30 days (to local
    midnight). A person votes once per window; only the window's votes count."""
    w = _open_useless_window(session, group.id, now)
    if w is None:
        period = local_day.isoformat()
        salt = window_salt(session, "useless", group.id, period, _local_midnight(local_day + USELESS_WINDOW, tz))
    else:
        period, salt = w.period, w.salt
    start = date.fromisoformat(period)
    new = repo.insert_ignore(session, UselessVote, [{
        "id": _random_id(), "group_id": group.id, "voter_key": pseudonym(secret, "useless", group.id, person_id, salt),
        "day": _monday(local_day), "window_start": start,
    }], ["group_id", "voter_key"]) == 1
    votes = session.execute(select(func.count()).where(UselessVote.group_id == group.id,
                                                       UselessVote.window_start == start)).scalar_one()
    threshold = useless_threshold(group.member_count, votes_min)
    review = False
    if new and votes >= threshold:
        review = True
        _useless_finding(session, group, votes, now)
        if group.owner_id:
            notify(session, person_id=group.owner_id, kind="useless_review", group_id=group.id, at=day_start(now),
                   text=f"{vote_count_words(votes)}匿名认为“{group.name}”没有用处。请看看是否还需要它："
                        f"不需要可回复“完成 {group.name}”，需要请回复“保留 {group.name} 理由”。",
                   dedupe_key=f"useless_review:{group.id}:{period}",
                   premise=premises.of("useless_review", group))
    return VoteResult(new, votes, threshold, review)


def _useless_finding(session: Session, group: Group, votes: int, now: datetime) -> None:
    """Kind ``useless`` in the findings table (dashboard and digest), never in ``qunzhi scan`` output."""
    key = f"useless:{group.id}"
    row = session.execute(select(FindingRecord).where(FindingRecord.key == key)).scalar_one_or_none()
    reasons = [f"{votes}位成员匿名认为此群没用" if shown_votes(votes) is not None
               else f"有成员匿名认为此群没用（{FEW_VOTES}）"]
    score = float(shown_votes(votes) or 0)
    now = day_start(now)  # written with a vote: no time finer than the day
    if row is None:
        repo.insert_ignore(session, FindingRecord, [{
            "key": key, "kind": "useless", "group_ids": [group.id], "person_ids": [], "score": score,
            "action": "review", "reasons": reasons, "status": "open", "first_seen": now, "last_seen": now,
        }], ["key"])
    else:
        row.score, row.reasons, row.last_seen, row.status = score, reasons, now, "open"


LIVE = ("active", "warned")


def refresh_useless_findings(session: Session, now: datetime, votes_min: int) -> int:
    """Useless findings are kept open only while their group is live and the votes in its open
    window still meet the threshold; resolved otherwise (the window closed, the group was
    dissolved, members joined). Returns how many were resolved."""
    resolved = 0
    for r in session.execute(select(FindingRecord).where(FindingRecord.kind == "useless",
                                                         FindingRecord.status == "open")).scalars().all():
        gid = (r.group_ids or [None])[0]
        g = session.get(Group, gid) if gid else None
        if g is not None and g.status in LIVE and \
                window_votes(session, g.id, now) >= useless_threshold(g.member_count, votes_min):
            continue
        r.status, r.last_seen = "resolved", now
        resolved += 1
    return resolved


def close_windows(session: Session, now: datetime) -> dict[str, int]:
    """Make closed windows unattributable: delete their salts, replace the voter keys of their
    votes (and of votes from before salts existed) with random values, delete the anonymous
    dedupe rows whose day's salt is gone and the sent card updates of those days."""
    closed = session.execute(select(func.count()).select_from(AnonSalt).where(AnonSalt.closes_at <= now)).scalar_one()
    session.execute(delete(AnonSalt).where(AnonSalt.closes_at <= now))
    still_open = set(session.execute(select(AnonSalt.purpose, AnonSalt.scope, AnonSalt.period)).tuples())
    pulse = [{"id": i, "voter_key": _scrubbed_key()} for i, period in session.execute(
        select(PulseResponse.id, PulseResponse.period).where(PulseResponse.voter_key.not_like(SCRUBBED + "%")))
        if ("pulse", "", period) not in still_open]
    useless = [{"id": i, "voter_key": _scrubbed_key()} for i, gid, start in session.execute(
        select(UselessVote.id, UselessVote.group_id, UselessVote.window_start)
        .where(UselessVote.voter_key.not_like(SCRUBBED + "%")))
        if start is None or ("useless", gid, start.isoformat()) not in still_open]
    if pulse:
        session.execute(update(PulseResponse), pulse)
    if useless:
        session.execute(update(UselessVote), useless)
    cutoff = day_start(now) - timedelta(days=1)  # the dedupe salts of days before this are closed
    dedupe = session.execute(delete(ProcessedEvent).where(ProcessedEvent.key.like("anon:%"),
                                                          ProcessedEvent.at < cutoff)).rowcount
    cards = session.execute(delete(OutboxMessage).where(OutboxMessage.channel == "card_update",
                                                        OutboxMessage.status.in_(("sent", "dead")),
                                                        OutboxMessage.created_at < cutoff)).rowcount
    session.flush()
    return {"salts": closed, "pulse": len(pulse), "useless": len(useless), "dedupe": dedupe, "card_updates": cards}


# --- formalism reports -----------------------------------------------------------------------
def record_formalism_report(session: Session, *, text: str, now: datetime, local_day: date) -> int:
    """Store the report without any identity and notify every commission member."""
    rid = _random_id()
    session.add(FormalismReport(id=rid, day=local_day, text=text, forwarded=True))
    commission = session.execute(select(Person.id).where(Person.role == "commission")).scalars().all()
    for pid in commission:
        notify(session, person_id=pid, kind="formalism", at=day_start(now), text=f"匿名反映（形式主义）：{text}",
               dedupe_key=f"formalism:{rid}:{pid}")
    return len(commission)
