"""SQLAlchemy 2 models: the ledger (台账), activity, audit trail, outbox and feedback.

Every datetime column is stored as UTC (``UTCDateTime``) and read back as an aware datetime,
so SQLite and PostgreSQL behave the same.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# BigInteger ids that still autoincrement on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out; naive values are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: pass an aware datetime")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Person(Base):
    """A cadre (干部) known to the bot, by platform user id."""

    __tablename__ = "persons"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(64), index=True)
    unit: Mapped[str | None] = mapped_column(String(128), index=True)
    role: Mapped[str] = mapped_column(String(16), default="cadre")  # cadre|unit_admin|admin|commission
    created_at: Mapped[datetime]
    # from the roster (花名册, ``qunzhi import people``): 职务 (the accounts are ``PersonAccount`` rows)
    title: Mapped[str | None] = mapped_column(String(64))


class PersonAccount(Base):
    """One account of a person on one platform (storage/identity.py): the WeCom userid (``wecom``,
    which the self-built app and the AI bot share), a bridge platform's own id (``wechat``: the raw
    id, not the stored ``wechat:…``), later ``feishu`` open_id and ``dingtalk`` userid. An account
    belongs to one person; a person has at most one account per platform. A person's id stays what
    it was (the first account it was seen with); events from its other accounts are attributed to
    it (``identity.resolve_senders``)."""

    __tablename__ = "person_accounts"
    # account id first: a batch of events looks its senders up by account id (identity.resolve_batch)
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(64), ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    linked_at: Mapped[datetime]
    __table_args__ = (UniqueConstraint("person_id", "platform", name="uq_person_accounts_person_platform"),)


class Group(Base):
    """A work group (工作群) in the ledger, with its registration (报备) and lifecycle state."""

    __tablename__ = "groups"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    platform: Mapped[str] = mapped_column(String(16), default="wecom")
    name: Mapped[str] = mapped_column(String(128), index=True)
    owner_id: Mapped[str | None] = mapped_column(String(64), index=True)
    unit: Mapped[str | None] = mapped_column(String(128), index=True)
    category: Mapped[str | None] = mapped_column(String(32))
    purpose: Mapped[str | None] = mapped_column(String(256))
    temporary: Mapped[bool] = mapped_column(Boolean, default=False)
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    first_seen_at: Mapped[datetime]
    # start of the bot's observation established by data (the earliest start of a message archive's
    # coverage, ``qunzhi import messages``), independent of when an import ran; None: not covered
    observed_since: Mapped[datetime | None]
    expires_at: Mapped[date | None] = mapped_column(Date)
    registered_at: Mapped[datetime | None]
    registered_by: Mapped[str | None] = mapped_column(String(64))
    # an owner registered a protected category: protection waits for a unit administrator (确认保护)
    protect_requested_at: Mapped[datetime | None]
    protect_requested_by: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16), default="chat")  # chat|ledger|activity|bridge
    # lifecycle
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_changed_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
    warned_at: Mapped[datetime | None]
    warning_sent_at: Mapped[datetime | None]
    dissolved_at: Mapped[datetime | None]
    dissolve_method: Mapped[str | None] = mapped_column(String(16))
    dissolve_state: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    order_deadline: Mapped[datetime | None]
    kept_until: Mapped[datetime | None]
    keep_count: Mapped[int] = mapped_column(Integer, default=0)
    merged_into: Mapped[str | None] = mapped_column(String(128))
    # maintained activity aggregates (the zombie check reads these, never the messages)
    member_count: Mapped[int] = mapped_column(Integer, default=0)
    message_count: Mapped[int] = mapped_column(BigInteger, default=0)
    ritual_count: Mapped[int] = mapped_column(BigInteger, default=0)
    last_message_at: Mapped[datetime | None]
    last_work_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    # from the ledger: its 备注, and members written as names that match nobody in the roster (or two
    # people): counted in member_count, never persons, so in no per-person figure
    note: Mapped[str | None] = mapped_column(Text)
    ledger_names: Mapped[list[Any] | None] = mapped_column(JSON)
    # what the bot sees of its traffic: full | mentions | counts | archive | none (migration 0009)
    activity_source: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (Index("ix_groups_status_last_work", "status", "last_work_at"),)


class LedgerLink(Base):
    """A ledger entry (``ledger:`` id) confirmed to be a platform group: the entry's row was folded into
    the group (registration, owner, purpose, expiry, ledger names), so they are one group; a re-import
    of the ledger writes to the group (``storage.reconcile``, migration 0011). One entry per group."""

    __tablename__ = "ledger_links"
    ledger_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(128), unique=True, index=True)
    ledger_name: Mapped[str] = mapped_column(String(128))
    ledger_unit: Mapped[str | None] = mapped_column(String(128))
    linked_at: Mapped[datetime]
    linked_by: Mapped[str] = mapped_column(String(64))


class LedgerRejection(Base):
    """A ledger entry and a platform group an administrator said are not the same group: never
    proposed again (``storage.reconcile``)."""

    __tablename__ = "ledger_rejections"
    ledger_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    rejected_at: Mapped[datetime]
    rejected_by: Mapped[str] = mapped_column(String(64))


class Membership(Base):
    __tablename__ = "memberships"
    group_id: Mapped[str] = mapped_column(String(128), ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    joined_at: Mapped[datetime | None]


class Message(Base):
    """A message seen in a group. Text only when QUNZHI_STORE_MESSAGE_TEXT is on."""

    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    platform: Mapped[str] = mapped_column(String(16))
    group_id: Mapped[str | None] = mapped_column(String(128), index=True)
    sender_id: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[datetime]
    is_ritual: Mapped[bool] = mapped_column(Boolean, default=False)
    text: Mapped[str | None] = mapped_column(Text)


class ProcessedEvent(Base):
    """Dedupe keys of callbacks already handled (WeCom retries up to three times, byte for byte).

    ``reply``: what a repeat of the event is answered with, when it is not what the event itself
    determines (NULL: recompute it, ``handlers.dispatch.repeat_replies``): the first attempt's
    replies (text, card, markdown) as the per-event path answered them, or ``[]`` once a late
    first attempt's replies went to the outbox."""

    __tablename__ = "processed_events"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    at: Mapped[datetime]
    reply: Mapped[list[Any] | None] = mapped_column(JSON)


class Conversation(Base):
    """State of a multi-turn dialogue (e.g. registration asking field by field)."""

    __tablename__ = "conversations"
    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    intent: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime]


class AuditRecord(Base):
    """Append-only audit trail; each record carries the hash of the previous one."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32), index=True)
    group_id: Mapped[str | None] = mapped_column(String(128), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class FindingRecord(Base):
    """Findings persisted by scans, for the sweep, digests and the dashboard."""

    __tablename__ = "findings"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    kind: Mapped[str] = mapped_column(String(24), index=True)
    group_ids: Mapped[list[Any]] = mapped_column(JSON)
    person_ids: Mapped[list[Any]] = mapped_column(JSON)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    action: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)  # open|resolved
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]


class OutboxMessage(Base):
    """Every outgoing message, written in the same transaction as the change that caused it."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime]
    channel: Mapped[str] = mapped_column(String(16))  # user|appchat|aibot|bridge|card_update
    recipient: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    # pending|claimed|sending|sent|dead|uncertain|cancelled|withdrawn (every notice in it lost its premise)
    # |unreachable (no configured platform can carry it; scheduler/outbox.py)
    status: Mapped[str] = mapped_column(String(12), default="pending", index=True)
    not_before: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_id: Mapped[str | None] = mapped_column(String(128))


class PlatformRequest(Base):
    """Work a platform must do that a chat command asked for (建群: ``kind`` ``create_group``),
    written in the command's transaction and carried out by the scheduler outside any
    transaction (``storage.creation``, ``scheduler.platform_work``); the group is registered only
    when the platform returned its chat id.

    ``status``: pending → running → done | failed (the platform refused, or too many attempts) |
    uncertain (the process died while the platform was asked: it may or may not exist; never
    retried, the person and the administrators are told)."""

    __tablename__ = "platform_requests"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(24))
    platform: Mapped[str] = mapped_column(String(32))
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12), default="pending", index=True)
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    result: Mapped[str | None] = mapped_column(String(128))  # the group id registered
    last_error: Mapped[str | None] = mapped_column(Text)


class Notice(Base):
    """An item due for one person; notices are merged into one digest within the attention budget."""

    __tablename__ = "notices"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    group_id: Mapped[str | None] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    due_at: Mapped[datetime]
    created_at: Mapped[datetime]
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(12), default="pending", index=True)  # pending|held|sent|merged|withdrawn
    outbox_id: Mapped[int | None] = mapped_column(BigInteger)
    decided_at: Mapped[datetime | None]
    # what the notice assumes about its group (storage.premises); None: always holds
    premise: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    # when its premise ended: withdrawn before it went out, or corrected after (storage.premises.settle)
    withdrawn_at: Mapped[datetime | None]


class FindingRefresh(Base):
    """When the findings were last computed, per scope: ``full`` (every rule over the whole ledger;
    the per-group refresh after a command is not stamped, see storage.lifecycle)."""

    __tablename__ = "finding_refreshes"
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)  # full
    at: Mapped[datetime]


class GroupDailyCount(Base):
    """Messages counted in a group on one day, without content (专属钉钉 ``activeGroups``: activity
    source ``counts``). Only what ``governance.rules_counts`` needs: no sender, no text."""

    __tablename__ = "group_daily_counts"
    group_id: Mapped[str] = mapped_column(String(128), ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    messages: Mapped[int] = mapped_column(Integer)


class CountDay(Base):
    """A day whose counts were imported for a platform (a group without a row that day had no
    message): the coverage the counts rule needs before it says idle."""

    __tablename__ = "count_days"
    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    imported_at: Mapped[datetime]


class PulseAsk(Base):
    """When a person was last asked the pulse question (not linked to any answer)."""

    __tablename__ = "pulse_asks"
    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    asked_at: Mapped[datetime]


class PulseResponse(Base):
    """One anonymous pulse answer: a keyed pseudonym only prevents double voting."""

    __tablename__ = "pulse_responses"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    period: Mapped[str] = mapped_column(String(16))  # e.g. 2026-W47
    unit: Mapped[str | None] = mapped_column(String(128))
    value: Mapped[int] = mapped_column(Integer)  # 1 light, 2 moderate, 3 heavy
    voter_key: Mapped[str] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date)
    __table_args__ = (UniqueConstraint("period", "voter_key"),)


class UselessVote(Base):
    """An anonymous "this group is useless" vote (这个群没用), counted in its group's 30-day window."""

    __tablename__ = "useless_votes"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    group_id: Mapped[str] = mapped_column(String(128), index=True)
    voter_key: Mapped[str] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date)
    window_start: Mapped[date | None] = mapped_column(Date)  # the day the group's vote window opened
    __table_args__ = (UniqueConstraint("group_id", "voter_key"),)


class AnonSalt(Base):
    """A random salt for the pseudonyms and dedupe keys of one anonymous window (a pulse week, a
    group's 30-day vote window, a day of anonymous dedupe keys). Kept only while the window is
    open: ``storage.feedback.close_windows`` deletes it once the window closes. Never back it up
    (``BACKUP_EXCLUDED_TABLES``): a restored salt would let the pseudonym key attribute votes again."""

    __tablename__ = "anon_salts"
    purpose: Mapped[str] = mapped_column(String(16), primary_key=True)  # pulse|useless|dedupe
    scope: Mapped[str] = mapped_column(String(128), primary_key=True)  # group id for useless, else ""
    period: Mapped[str] = mapped_column(String(32), primary_key=True)  # 2026-W48, or the window's first day
    salt: Mapped[str] = mapped_column(String(64))
    closes_at: Mapped[datetime] = mapped_column(index=True)


# Tables a backup must leave out (the backup command of a later issue reads this list).
BACKUP_EXCLUDED_TABLES = ("anon_salts",)


class FormalismReport(Base):
    """An anonymous formalism report (反映): never stored with the reporter's identity."""

    __tablename__ = "formalism_reports"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    day: Mapped[date] = mapped_column(Date)
    text: Mapped[str] = mapped_column(Text)
    forwarded: Mapped[bool] = mapped_column(Boolean, default=False)


class StatSnapshot(Base):
    """Daily figures for trend charts and digests."""

    __tablename__ = "stat_snapshots"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class LoginToken(Base):
    """One-time dashboard links and dashboard sessions (only hashes are stored)."""

    __tablename__ = "login_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))  # link|session
    person_id: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    csrf: Mapped[str | None] = mapped_column(String(64))


class LoginThrottle(Base):
    """Wrong admin tokens per client address and its lockout (storage/throttle.py)."""

    __tablename__ = "login_throttle"
    client: Mapped[str] = mapped_column(String(64), primary_key=True)  # peer or trusted proxy's X-Forwarded-For hop
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
