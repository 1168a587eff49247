"""The group lifecycle with I/O: findings, warnings, dissolution per platform, restore, purge.

Pure rules live in ``governance`` (``scan``, ``lifecycle.transition``/``next_step``); this
module loads facts in bulk, persists findings, and applies the steps with an audit record
for every change.

Design (crash safety and idempotency)
-------------------------------------
* **Intent first.** A dissolution first moves the group to the storage-level state
  ``dissolving`` and records the intent in ``dissolve_state`` (method, reason, original
  name, member list, steps done) in one transaction, with an audit record
  (``dissolve_intent``).  Only then are platform steps taken.  A group is therefore never
  "half dissolved without a record": after a crash the next sweep finds it in
  ``dissolving`` and finishes the remaining steps.  The sweep only starts a dissolution
  from ``warned``, so no group is dissolved twice.
* **Platform steps run in the sweep through a Sender passed in**, not through the outbox:
  an appchat dissolution is an ordered sequence (final notice → remove members → rename)
  that must use the member list recorded before removal; each step is recorded in
  ``dissolve_state["done"]`` in its own transaction right after it succeeded.  Steps are
  idempotent on replay: members are removed/re-added after reading the chat with
  ``appchat_get`` (only those still present/absent), a rename to the same name is
  harmless; only the final notice can be sent twice if the process dies between the call
  and the commit (at-least-once, like the outbox).  A transient send error leaves the step
  for the next run (recorded in ``dissolve_state["last_error"]``); a permanent one falls
  back to the order path, so nothing is lost.  Without a Sender (e.g. a CLI with no WeCom
  credentials), appchat groups wait in ``dissolving`` and are reported.
* **Bridge** dissolutions are pure database work: the instruction goes into the outbox
  (channel ``bridge``, dedupe key per instruction) in the intent transaction; the group
  becomes ``dissolved`` when :func:`confirm_bridge_dissolution` is called.
* **Order** path (no API): a dissolution order with ``order_deadline`` goes to the owner;
  the owner answers ``已解散 <群>`` (:func:`confirm_order`); after the deadline the sweep
  notifies the commission once (``dissolve_state["escalated_at"]``).
* Restore of an appchat group goes through ``restoring`` the same way (add members back,
  rename back, notice), executed by :func:`advance_pending`.
* Protection is checked again under a row lock (``SELECT … FOR UPDATE`` on PostgreSQL) at
  apply time; a sweep-wide advisory lock stops two sweeps running at once.
* ``--as-of DATE`` means the end of that day in ``QUNZHI_TIMEZONE`` (see :func:`as_of`).
"""
from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.orm import Session

from governance import labels
from governance.dates import fmt_date
from governance.lifecycle import AUTO_DISSOLVE_KINDS, WARN_KINDS, GroupState, LifecycleError, next_step, transition
from governance.model import Finding, GroupFacts, Params
from governance.rules_activity import idle_since
from governance.rules import OWN_CONDITION
from governance.scan import kinds_by_group, scan
from storage import audit, premises, repo
from storage.models import FindingRecord, FindingRefresh, Group, Membership, Person
from storage.outbox import enqueue, notify

log = logging.getLogger("qunzhi.lifecycle")

SYSTEM = "system:sweep"
DISSOLVING = "dissolving"
RESTORING = "restoring"
LIVE = ("active", "warned")
ORDER_DAYS = 3  # days the owner has to carry out a dissolution order by hand
DISSOLVE_STEPS = ("notice", "remove", "rename")
RESTORE_STEPS = ("add", "rename", "notice")
DISSOLVED_PREFIX = "[已解散]"
_SWEEP_LOCK = 727276

__all__ = [
    "params_from", "as_of", "load_facts", "compute_findings", "refresh_findings", "refresh_group_findings",
    "findings_computed_at", "groups_changed", "mark_warning_sent",
    "confirm_bridge_dissolution", "confirm_order", "keep_group", "restore_group", "merge_group",
    "set_protected", "begin_dissolution", "plan", "sweep", "advance_pending", "Step", "SweepReport",
]


# --- parameters, time ------------------------------------------------------------------------
def params_from(settings) -> Params:
    return Params(
        zombie_days=settings.zombie_days, duplicate_jaccard=settings.duplicate_jaccard,
        overlap_containment=settings.overlap_containment, max_groups_per_person=settings.max_groups_per_person,
        unregistered_grace_days=settings.unregistered_grace_days, grace_days=settings.grace_days,
        restore_days=settings.restore_days, keep_days=settings.keep_days,
    )


def as_of(day: date, settings) -> datetime:
    """``--as-of 2026-11-22``: the END of that day in the configured time zone (as UTC), so
    everything due on that day is handled."""
    local = datetime.combine(day, time.max, tzinfo=settings.tz)
    return local.astimezone(timezone.utc)


def _today(now: datetime, settings) -> date:
    return now.astimezone(settings.tz).date()


# --- facts and findings ----------------------------------------------------------------------
def _facts(g: Group, members: frozenset[str]) -> GroupFacts:
    return GroupFacts(
        id=g.id, name=g.name, platform=g.platform, owner_id=g.owner_id, unit=g.unit, category=g.category,
        purpose=g.purpose, protected=bool(g.protected), registered=g.registered_at is not None,
        temporary=bool(g.temporary), created_at=g.created_at, expires_at=g.expires_at, done_at=g.done_at,
        status=g.status, last_work_at=g.last_work_at, last_message_at=g.last_message_at,
        message_count=g.message_count or 0, ritual_count=g.ritual_count or 0, member_ids=members,
        kept_until=g.kept_until, dissolved_at=g.dissolved_at, first_seen_at=g.first_seen_at,
        observed_since=g.observed_since, members_known=_members_known(g, members),
    )


#: sources whose groups the bot has seen through an adapter (their members show up in the events)
_OBSERVED_SOURCES = ("activity", "bridge")


def _members_known(g, members: frozenset[str]) -> bool:
    """A group registered in a private chat (or a ledger row without members) has no membership
    source until an adapter or an archive covering it shows one."""
    return bool(members) or g.source in _OBSERVED_SOURCES


_FACT_COLUMNS = ("id", "name", "platform", "owner_id", "unit", "category", "purpose", "protected", "registered_at",
                 "temporary", "created_at", "expires_at", "done_at", "status", "last_work_at", "last_message_at",
                 "message_count", "ritual_count", "kept_until", "dissolved_at", "first_seen_at", "dissolve_state",
                 "observed_since", "source")


def _stream_memberships(session: Session, batch: int = 50_000):
    """(group_id, person_id) of every membership, ordered by group, as plain tuples."""
    dbapi_conn = session.connection().connection.dbapi_connection
    sql = f"SELECT group_id, person_id FROM {Membership.__table__.name} ORDER BY group_id"
    named = session.get_bind().dialect.name == "postgresql"
    cursor = dbapi_conn.cursor(name="qunzhi_memberships") if named else dbapi_conn.cursor()
    try:
        cursor.execute(sql)
        while rows := cursor.fetchmany(batch):
            yield from rows
    finally:
        cursor.close()


def _facts_condition(now: datetime, params: Params):
    """Live groups, and dissolved ones recent enough for the rebound and restore rules."""
    since = now - timedelta(days=max(params.rebound_days, params.restore_days))
    return or_(Group.status.in_(LIVE),
               and_(Group.status.in_(("dissolved", "merged", "purged")), Group.dissolved_at >= since),
               Group.status == "dissolved")


def load_facts(session: Session, now: datetime, settings) -> tuple[list[GroupFacts], list[GroupFacts]]:
    """(live groups, recently dissolved groups) as GroupFacts, loaded in bulk.

    A province has hundreds of thousands of groups and millions of memberships: groups are read
    as plain rows (no ORM objects), memberships are streamed in id order and person ids interned,
    so each member set is built once, directly as a frozenset."""
    params = params_from(settings)
    cond = _facts_condition(now, params)
    cols = [Group.__table__.c[name] for name in _FACT_COLUMNS]
    rows = session.execute(select(*cols).where(cond).order_by(Group.id)).all()
    interned: dict[str, str] = {}
    members: dict[str, frozenset[str]] = {}
    wanted = {g.id for g in rows}
    current, bucket, keep = None, [], False
    # Plain driver tuples through a server-side cursor where there is one: building 8 million
    # SQLAlchemy rows costs several times the fetch itself. Memberships of groups the scan does
    # not look at (purged long ago) are skipped here rather than by a join.
    for gid, pid in _stream_memberships(session):
        if gid != current:
            if keep:
                members[current] = frozenset(bucket)
            current, bucket, keep = gid, [], gid in wanted
        if keep:
            bucket.append(interned.setdefault(pid, pid))
    if keep:
        members[current] = frozenset(bucket)
    live, gone = [], []
    empty: frozenset[str] = frozenset()
    for g in rows:
        m = members.pop(g.id, empty)
        if g.status in LIVE:
            live.append(_facts(g, m))
        else:  # a dissolved appchat group keeps its former members in dissolve_state
            former = (g.dissolve_state or {}).get("members") or ()
            gone.append(_facts(g, m | frozenset(interned.setdefault(p, p) for p in former) if former else m))
    return live, gone


def compute_findings(session: Session, now: datetime, settings) -> list[Finding]:
    """Every rule over the current ledger; changes nothing."""
    live, gone = load_facts(session, now, settings)
    # local time: the dates written into the reasons are the ones cadres see on their calendar
    return scan(live, now.astimezone(settings.tz), params_from(settings), gone, today=_today(now, settings))


def refresh_findings(session: Session, now: datetime, settings) -> list[Finding]:
    """Run the scan and persist it: upsert by ``Finding.key``, resolve what is no longer seen
    (never the ``useless`` findings: those come from anonymous votes, not from the scan)."""
    findings = compute_findings(session, now, settings)
    by_key = {f.key: f for f in findings}
    _upsert_findings(session, by_key, now)
    for r in session.execute(select(FindingRecord).where(FindingRecord.status == "open",
                                                         FindingRecord.kind.not_in(OWN_CONDITION_KINDS))).scalars():
        if r.key not in by_key:
            r.status, r.last_seen = "resolved", now
    from storage.feedback import refresh_useless_findings

    refresh_useless_findings(session, now, settings.useless_votes_min)  # open while their votes still count
    _stamp_findings(session, "full", now)
    session.flush()
    return findings


def refresh_group_findings(session: Session, group_ids, now: datetime, settings) -> list[Finding]:
    """Refresh the findings of a few groups right after a command changed them, without a scan.

    Only the per-group rules (``zombie``, ``expired``, ``unregistered``) are recomputed for these
    groups: their findings appear or are resolved at once. The member-set rules (duplicate,
    overlap, overloaded, rebound) need every group's members; they stay as the last full refresh
    left them (hourly job ``refresh_findings``, after imports, at the sweep), and the dashboard
    says when that was. ``useless`` findings are never touched."""
    from governance.model import Finding as _Finding
    from governance.scan import PER_GROUP_KINDS, per_group

    ids = sorted(set(group_ids))
    if not ids:
        return []
    groups = list(session.execute(select(Group).where(Group.id.in_(ids))).scalars())
    members: dict[str, set[str]] = defaultdict(set)
    for gid, pid in session.execute(select(Membership.group_id, Membership.person_id)
                                    .where(Membership.group_id.in_(ids))):
        members[gid].add(pid)
    live = [_facts(g, frozenset(members.get(g.id, ()))) for g in groups if g.status in LIVE]
    findings = per_group(live, now.astimezone(settings.tz), params_from(settings), today=_today(now, settings))
    by_key = {f.key: f for f in findings}
    # the keys these groups' per-group findings can have (unregistered names the owner, if known)
    candidates = {_Finding(kind, [g.id], persons, 0.0, "review", []).key
                  for g in groups for kind in PER_GROUP_KINDS
                  for persons in ([], [g.owner_id] if g.owner_id else [])} | set(by_key)
    keys = sorted(candidates)
    present = set(session.execute(select(FindingRecord.key).where(FindingRecord.key.in_(keys))).scalars())
    q = select(FindingRecord).where(FindingRecord.key.in_(keys))
    if session.get_bind().dialect.name == "postgresql":
        # a full refresh holds these rows until it commits (minutes on a province): a command
        # does not wait for it; the rows it holds are left to it (and to the next hourly run)
        q = q.with_for_update(skip_locked=True)
    rows = {r.key: r for r in session.execute(q).scalars()}
    busy = present - set(rows)
    _upsert_findings(session, {k: f for k, f in by_key.items() if k not in busy}, now, existing=rows)
    for key, r in rows.items():
        if key not in by_key and r.status == "open":
            r.status, r.last_seen = "resolved", now
    # No stamp here: one row written by every command would serialise them on its lock, and the
    # list as a whole is still as of the last full refresh (the dashboard says so).
    session.flush()
    return findings


def _upsert_findings(session: Session, by_key: dict[str, Finding], now: datetime,
                     existing: dict[str, FindingRecord] | None = None) -> None:
    """Insert or update the records of ``by_key`` (``existing``: the records already loaded)."""
    if existing is None:
        existing = {}
        keys = list(by_key)
        for i in range(0, len(keys), 500):
            for r in session.execute(select(FindingRecord).where(FindingRecord.key.in_(keys[i:i + 500]))).scalars():
                existing[r.key] = r
    new = []
    for key, f in by_key.items():
        r = existing.get(key)
        if r is None:
            new.append({"key": key, "kind": f.kind, "group_ids": list(f.group_ids), "person_ids": list(f.person_ids),
                        "score": f.score, "action": f.action, "reasons": list(f.reasons), "status": "open",
                        "first_seen": now, "last_seen": now})
        else:
            if r.status != "open":
                r.first_seen = now
            r.group_ids, r.person_ids, r.score = list(f.group_ids), list(f.person_ids), f.score
            r.action, r.reasons, r.status, r.last_seen = f.action, list(f.reasons), "open", now
    # ON CONFLICT DO NOTHING: a command's refresh and the hourly one may find the same new finding at once
    for i in range(0, len(new), 1000):
        repo.insert_ignore(session, FindingRecord, new[i:i + 1000], ["key"])


def _stamp_findings(session: Session, scope: str, now: datetime) -> None:
    """Remember when the findings were computed (``finding_refreshes``, shown on the dashboard)."""
    repo.insert_ignore(session, FindingRefresh, [{"scope": scope, "at": now}], ["scope"])
    session.execute(update(FindingRefresh).where(FindingRefresh.scope == scope, FindingRefresh.at < now)
                    .values(at=now))


def findings_computed_at(session: Session) -> dict[str, datetime]:
    """``{"full": …}``: when every rule last ran over the whole ledger (empty: never)."""
    return dict(session.execute(select(FindingRefresh.scope, FindingRefresh.at)).all())


def groups_changed(session: Session, group_ids, now: datetime, settings, *, actor: str | None = None) -> None:
    """After a command or an administrator's action changed ``group_ids`` (in its transaction):
    withdraw or correct their notices whose premise ended (``storage.premises.settle``) and
    refresh their per-group findings (:func:`refresh_group_findings`)."""
    ids = sorted({g for g in group_ids if g})
    if not ids:
        return
    session.flush()
    premises.settle(session, ids, now, settings, actor=actor)
    refresh_group_findings(session, ids, now, settings)


# Findings the scan does not produce (storage.feedback writes "useless" from anonymous votes): the
# scan's absence says nothing about them, their own source resolves them.
OWN_CONDITION_KINDS = tuple(k.code for k in OWN_CONDITION)  # declared in governance.rules


# --- small helpers ---------------------------------------------------------------------------
def _locked(session: Session, group_id: str) -> Group | None:
    stmt = select(Group).where(Group.id == group_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()


def _state(g: Group) -> GroupState:
    return GroupState(status=g.status, protected=bool(g.protected), warned_at=g.warned_at,
                      warning_sent_at=g.warning_sent_at, kept_until=g.kept_until, keep_count=g.keep_count or 0,
                      expires_at=g.expires_at, dissolved_at=g.dissolved_at, merged_into=g.merged_into)


def _set_status(g: Group, status: str, now: datetime, reason: str | None) -> None:
    g.status, g.status_changed_at, g.status_reason, g.updated_at = status, now, reason, now


def _persons_with_role(session: Session, role: str) -> list[str]:
    return list(session.execute(select(Person.id).where(Person.role == role).order_by(Person.id)).scalars())


def _responsible(session: Session, g: Group) -> list[str]:
    """Who hears about a group: its owner, else its unit's administrators, else admins."""
    if g.owner_id:
        return [g.owner_id]
    if g.unit:
        ids = list(session.execute(select(Person.id).where(Person.role == "unit_admin", Person.unit == g.unit)
                                   .order_by(Person.id)).scalars())
        if ids:
            return ids
    return _persons_with_role(session, "admin")


def _notify_commission(session: Session, *, kind: str, text_: str, at: datetime, group_id: str, key: str,
                       premise: dict | None = None) -> int:
    ids = _persons_with_role(session, "commission")
    for pid in ids:
        notify(session, person_id=pid, kind=kind, text=text_, at=at, group_id=group_id,
               dedupe_key=f"{key}:{pid}"[:200], premise=premise)
    return len(ids)


def _caps(g: Group, settings):
    from platforms.capabilities import for_group  # pure module; the mapping lives with the adapters

    return for_group(g, settings)


# --- warning ---------------------------------------------------------------------------------
def _why(g: Group, facts: GroupFacts | None, findings: list[Finding], now: datetime, settings) -> str:
    kinds = {f.kind for f in findings}
    today = _today(now, settings)
    since = idle_since(facts) if facts is not None else None
    if "zombie" in kinds and since is not None:
        days = int((now - since).total_seconds() // 86400)
        s = f"已{days}天没有工作消息"
        if facts.last_message_at and facts.last_message_at > since and facts.ritual_count:
            s += f"（其间只有“收到”“签到”等留痕消息，累计{facts.ritual_count}条）"
        return s
    if "expired" in kinds:
        if g.done_at is not None:
            return "任务已标记完成"
        if g.expires_at is not None:
            return f"已于{fmt_date(g.expires_at, today)}到期"
    for f in findings:
        if f.reasons:
            return f.reasons[0]
    return "被治理规则标记"


def _warn(session: Session, g: Group, findings: list[Finding], facts: GroupFacts | None, now: datetime,
          settings) -> None:
    params = params_from(settings)
    new = transition(_state(g), "warn", now, params)
    g.status, g.warned_at, g.warning_sent_at = new.status, new.warned_at, None
    g.status_changed_at, g.updated_at = now, now
    kinds = sorted({f.kind for f in findings})
    why = _why(g, facts, findings, now, settings)
    g.status_reason = why
    reasons = [r for f in findings for r in f.reasons]
    audit.record(session, actor=SYSTEM, action="warn", at=now, group_id=g.id, reason="；".join(reasons) or why,
                 data={"kinds": kinds})
    today = _today(now, settings)
    due = fmt_date((now + timedelta(days=params.grace_days)).astimezone(settings.tz).date(), today)
    auto = bool(set(kinds) & AUTO_DISSOLVE_KINDS)
    if auto:
        tail = (f"如无异议，将于{due}解散，解散后{params.restore_days}天内可恢复。"
                f"需要保留请回复“保留 {g.name} 理由”。")
        if g.temporary:
            tail += f"如需延期请回复“续期 {g.name} 30天”。"
    else:
        tail = f"建议合并或清理，管理员会联系您；需要保留请回复“保留 {g.name} 理由”。"
    owner_text = f"您的“{g.name}”{why}。{tail}"
    stamp = now.isoformat()
    recipients = _responsible(session, g)
    for pid in recipients:
        notify(session, person_id=pid, kind="warning", text=owner_text, at=now, group_id=g.id, urgent=True,
               dedupe_key=f"warning:{g.id}:{stamp}:{pid}"[:200], premise=premises.of("warning", g))
    if g.temporary and auto:
        owner = repo.display_name(session, g.owner_id)
        member_text = (f"“{g.name}”{why}，如无异议将于{due}解散，解散后{params.restore_days}天内可恢复。"
                       f"如需继续使用请联系群主（{owner}）。")
        for pid in repo.member_ids(session, g.id):
            if pid not in recipients:
                notify(session, person_id=pid, kind="warning_member", text=member_text, at=now, group_id=g.id,
                       urgent=True, dedupe_key=f"warning:{g.id}:{stamp}:{pid}"[:200],
                       premise=premises.of("warning_member", g))


def mark_warning_sent(session: Session, group_id: str, at: datetime) -> bool:
    """The outbox delivered the warning notice: the grace period starts now.

    Called by the scheduler's dispatcher for a delivered notice of kind ``warning``.
    Idempotent: only the first delivery for the current warning counts."""
    g = _locked(session, group_id)
    if g is None or g.status != "warned" or g.warning_sent_at is not None:
        return False
    g.warning_sent_at, g.updated_at = at, at
    audit.record(session, actor="system:outbox", action="warning_sent", at=at, group_id=g.id,
                 reason="解散提醒已送达")
    return True


# --- dissolution -----------------------------------------------------------------------------
def begin_dissolution(session: Session, g: Group, now: datetime, settings, *, actor: str, reason: str,
                      final_status: str = "dissolved") -> str:
    """Record the intent (``dissolving``) and start the platform path; returns the method.

    The caller has checked the lifecycle guard (dissolve or merge); protection is checked
    here again."""
    if g.protected:
        raise LifecycleError("受保护群不能解散")
    if g.status not in LIVE:
        raise LifecycleError("群已不在使用中")
    caps = _caps(g, settings)
    members = repo.member_ids(session, g.id)
    state: dict[str, Any] = {"method": caps.method, "reason": reason, "actor": actor, "intent_at": now.isoformat(),
                             "name": g.name, "owner": g.owner_id, "members": members, "done": [],
                             "final_status": final_status, "from_status": g.status}
    g.dissolve_method = caps.method
    _set_status(g, DISSOLVING, now, reason)
    audit.record(session, actor=actor, action="dissolve_intent", at=now, group_id=g.id, reason=reason,
                 data={"method": caps.method, "members": len(members), "final_status": final_status})
    if caps.method == "bridge":
        iid = "dis-" + hashlib.sha1(f"{g.id}|{now.isoformat()}".encode()).hexdigest()[:16]
        state["instruction_id"] = iid
        enqueue(session, channel="bridge", recipient=g.id, kind="bridge_dissolve", at=now,
                payload={"type": "dissolve", "group_id": g.id, "instruction_id": iid, "platform": g.platform},
                dedupe_key=f"bridge-dissolve:{iid}")
    elif caps.method == "order":
        _order(session, g, state, now, settings, actor=actor)
    g.dissolve_state = state
    return caps.method


def _order(session: Session, g: Group, state: dict, now: datetime, settings, *, actor: str) -> None:
    deadline = now + timedelta(days=ORDER_DAYS)
    g.order_deadline = deadline
    g.dissolve_method = state["method"] = "order"
    day = fmt_date(deadline.astimezone(settings.tz).date(), _today(now, settings))
    for pid in _responsible(session, g):
        notify(session, person_id=pid, kind="dissolve_order", group_id=g.id, urgent=True, at=now,
               text=(f"“{g.name}”已到解散时间，但机器人无法直接操作该群。请于{day}前手动解散，"
                     f"完成后回复“已解散 {g.name}”。逾期未处理将报送纪委监委。"),
               dedupe_key=f"order:{g.id}:{now.isoformat()}:{pid}"[:200], premise=premises.of("dissolve_order", g))
    audit.record(session, actor=actor, action="dissolve_order", at=now, group_id=g.id, reason=state.get("reason"),
                 data={"deadline": deadline.isoformat()})


def _finish(session: Session, g: Group, at: datetime, settings, *, actor: str) -> None:
    """The platform side is done: ``dissolved`` (or ``merged``)."""
    state = dict(g.dissolve_state or {})
    final = state.get("final_status", "dissolved")
    state["finished_at"] = at.isoformat()
    g.dissolve_state = state
    g.dissolved_at = at
    g.order_deadline = None
    _set_status(g, final, at, state.get("reason"))
    audit.record(session, actor=actor, action="dissolve", at=at, group_id=g.id, reason=state.get("reason"),
                 data={"method": g.dissolve_method, "final_status": final})
    if final == "dissolved":
        params = params_from(settings)
        day = fmt_date((at + timedelta(days=params.restore_days)).astimezone(settings.tz).date(), _today(at, settings))
        for pid in _responsible(session, g):
            notify(session, person_id=pid, kind="dissolved", group_id=g.id, at=at,
                   text=f"“{g.name}”已解散。{day}前可恢复：回复“恢复 {g.name}”。",
                   dedupe_key=f"dissolved:{g.id}:{at.isoformat()}:{pid}"[:200], premise=premises.of("dissolved", g))


def _cancel_bridge_instruction(session: Session, g: Group, state: dict, now: datetime) -> None:
    """恢复 while a bridge dissolution waits: withdraw the instruction if it has not gone out,
    otherwise tell the bridge to cancel it (``{"type": "cancel_dissolve", ...}``)."""
    from storage.models import OutboxMessage

    iid = state["instruction_id"]
    row = session.execute(select(OutboxMessage).where(OutboxMessage.dedupe_key == f"bridge-dissolve:{iid}")
                          ).scalar_one_or_none()
    if row is not None and row.status == "pending":
        row.status, row.last_error = "cancelled", "群主恢复，解散指令撤回"
        state["instruction_cancelled"] = "withdrawn"
        return
    enqueue(session, channel="bridge", recipient=g.id, kind="bridge_cancel", at=now,
            payload={"type": "cancel_dissolve", "group_id": g.id, "instruction_id": iid, "platform": g.platform},
            dedupe_key=f"bridge-cancel:{iid}")
    state["instruction_cancelled"] = "cancel_sent"


def confirm_bridge_dissolution(session: Session, group_id: str, at: datetime, settings,
                               instruction_id: str | None = None) -> bool:
    """The bridge confirmed a dissolve instruction (a ``dissolve_confirmed`` event).
    Idempotent; False if nothing was waiting or the confirmation names another instruction."""
    g = _locked(session, group_id)
    if g is None or g.status != DISSOLVING or g.dissolve_method != "bridge":
        return False
    if instruction_id and instruction_id != (g.dissolve_state or {}).get("instruction_id"):
        log.warning("bridge confirmed instruction %s for %s, but %s is waiting", instruction_id, group_id,
                    (g.dissolve_state or {}).get("instruction_id"))
        return False
    _finish(session, g, at, settings, actor="system:bridge")
    return True


def confirm_order(session: Session, g: Group, at: datetime, settings, *, actor: str) -> None:
    """The owner carried out a dissolution order (``已解散 <群>``)."""
    if g.status != DISSOLVING or g.dissolve_method != "order":
        raise LifecycleError(f"“{g.name}”没有待执行的解散通知")
    _finish(session, g, at, settings, actor=actor)


# --- owner and administrator actions ----------------------------------------------------------
def keep_group(session: Session, g: Group, now: datetime, settings, *, actor: str, reason: str) -> bool:
    """保留: veto a warning / exempt for ``keep_days``.  Returns True when the commission was told."""
    params = params_from(settings)
    vetoed = g.status == "warned"
    new = transition(_state(g), "keep", now, params)
    g.status, g.kept_until, g.keep_count = new.status, new.kept_until, new.keep_count
    g.warned_at, g.warning_sent_at = None, None
    _set_status(g, new.status, now, f"群主保留：{reason}")
    audit.record(session, actor=actor, action="keep", at=now, group_id=g.id, reason=reason,
                 data={"kept_until": new.kept_until.isoformat(), "keep_count": new.keep_count,
                       "vetoed_warning": vetoed})
    if new.keep_count >= 2:
        owner = repo.display_name(session, g.owner_id)
        _notify_commission(session, kind="repeated_keep", at=now, group_id=g.id, key=f"keep:{g.id}:{new.keep_count}",
                           text_=f"“{g.name}”（{g.unit or '未填单位'}，群主{owner}）第{new.keep_count}次被保留，"
                                 f"理由：{reason}")
        return True
    return False


def restore_group(session: Session, g: Group, now: datetime, settings, *, actor: str) -> str:
    """恢复: undo a dissolution within ``restore_days`` (or cancel one in progress).

    Returns ``"done"`` (active now) or ``"pending"`` (members are re-added by the next
    :func:`advance_pending`)."""
    params = params_from(settings)
    state = dict(g.dissolve_state or {})
    new = None if g.status == DISSOLVING else transition(_state(g), "restore", now, params)  # refuses first
    # A restored group is wanted: it is not proposed again for ``keep_days`` (like 保留,
    # but without counting as a keep).
    g.kept_until = now + timedelta(days=params.keep_days)
    if g.status == DISSOLVING:
        started = [s for s in state.get("done", []) if s in ("remove", "rename")]
        audit.record(session, actor=actor, action="restore", at=now, group_id=g.id, reason="取消进行中的解散",
                     data={"method": g.dissolve_method, "cancelled": True})
        g.order_deadline = None
        if g.dissolve_method == "appchat" and started:
            state["restore"] = {"done": [], "requested_at": now.isoformat(), "by": actor}
            g.dissolve_state = state
            _set_status(g, RESTORING, now, "恢复中")
            return "pending"
        state["cancelled_at"] = now.isoformat()
        if g.dissolve_method == "bridge" and state.get("instruction_id"):
            _cancel_bridge_instruction(session, g, state, now)
        g.dissolve_state = state
        g.warned_at = g.warning_sent_at = None
        _set_status(g, "active", now, "群主恢复")
        return "done"
    audit.record(session, actor=actor, action="restore", at=now, group_id=g.id, reason="恢复已解散的群",
                 data={"method": g.dissolve_method, "dissolved_at": g.dissolved_at.isoformat()})
    g.warned_at = g.warning_sent_at = None
    if g.dissolve_method == "appchat":
        state["restore"] = {"done": [], "requested_at": now.isoformat(), "by": actor}
        g.dissolve_state = state
        _set_status(g, RESTORING, now, "恢复中")
        return "pending"
    g.dissolved_at = new.dissolved_at
    _set_status(g, "active", now, "恢复")
    return "done"


def merge_group(session: Session, a: Group, b: Group, now: datetime, settings, *, actor: str) -> str:
    """合并 A 到 B: A's members are told to use B; A is dissolved through its platform path
    (final state ``merged``)."""
    if a.id == b.id:
        raise LifecycleError("不能把群合并到它自己")
    if b.status not in LIVE:
        raise LifecycleError(f"“{b.name}”已不在使用中，不能作为合并目标")
    new = transition(_state(a), "merge", now, params_from(settings), merged_into=b.id)
    a.merged_into = new.merged_into
    audit.record(session, actor=actor, action="merge", at=now, group_id=a.id, reason="合并",
                 data={"into": b.id, "into_name": b.name})
    members = repo.member_ids(session, a.id)
    for pid in members:
        notify(session, person_id=pid, kind="merge", group_id=a.id, at=now,
               text=f"“{a.name}”已合并到“{b.name}”，今后请在“{b.name}”沟通，“{a.name}”将解散。",
               dedupe_key=f"merge:{a.id}:{b.id}:{pid}"[:200], premise=premises.of("merge", a, into=b.id))
    if not members:  # member list unknown: whoever is responsible tells the members
        for pid in _responsible(session, a):
            notify(session, person_id=pid, kind="merge", group_id=a.id, at=now,
                   text=(f"“{a.name}”已合并到“{b.name}”，“{a.name}”将解散。机器人不知道该群的成员，"
                         f"请在群里告知成员今后在“{b.name}”沟通。"),
                   dedupe_key=f"merge:{a.id}:{b.id}:{pid}"[:200], premise=premises.of("merge", a, into=b.id))
    return begin_dissolution(session, a, now, settings, actor=actor, reason="合并", final_status="merged")


def set_protected(session: Session, g: Group, protected: bool, now: datetime, *, actor: str) -> bool:
    """保护 / 取消保护; protecting a warned group withdraws the warning.  False if unchanged."""
    if protected and g.status in (DISSOLVING, RESTORING):
        raise LifecycleError(f"“{g.name}”正在解散或恢复中，请先回复“恢复 {g.name}”")
    if bool(g.protected) == protected:
        return False
    data: dict[str, Any] = {}
    if g.protect_requested_by:
        data["requested_by"] = g.protect_requested_by
    g.protected = protected
    g.protect_requested_at = g.protect_requested_by = None
    g.updated_at = now
    if protected and g.status == "warned":
        g.warned_at = g.warning_sent_at = None
        _set_status(g, "active", now, "设为受保护群，撤销解散提醒")
        data["withdrew_warning"] = True
    audit.record(session, actor=actor, action="protect" if protected else "unprotect", at=now, group_id=g.id,
                 reason="设为受保护群" if protected else "取消保护", data=data)
    return True


# --- the sweep ------------------------------------------------------------------------------
@dataclass
class Step:
    group_id: str
    name: str
    action: str  # warn|unwarn|dissolve|purge|resume|escalate
    method: str | None = None
    detail: str = ""
    result: str = "planned"  # planned|done|skipped|pending|error


@dataclass
class SweepReport:
    now: datetime
    applied: bool
    steps: list[Step] = field(default_factory=list)
    findings: int = 0
    locked_out: bool = False

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for s in self.steps:
            out[s.action] += 1
        return dict(out)




def plan(session: Session, now: datetime, settings, findings: list[Finding] | None = None) -> list[Step]:
    """What the sweep would do at ``now`` (reads only)."""
    params = params_from(settings)
    if findings is None:
        findings = compute_findings(session, now, settings)
    kinds = kinds_by_group(findings)
    live, gone = load_facts(session, now, settings)
    steps: list[Step] = []
    for facts in live + [f for f in gone if f.status == "dissolved"]:
        g_kinds = kinds.get(facts.id, set())
        warning_sent = None
        if facts.status == "warned":
            g = session.get(Group, facts.id)
            warning_sent = g.warning_sent_at
        step = next_step(facts, warning_sent, g_kinds, now, params)
        if step is None and facts.status == "warned" and not (g_kinds & WARN_KINDS):
            steps.append(Step(facts.id, facts.name, "unwarn", detail="已不再符合解散条件"))
            continue
        if step is None:
            continue
        detail = labels.kinds(sorted(g_kinds)) if step != "purge" else f"解散已满{params.restore_days}天"
        method = None
        if step == "dissolve":
            method = _caps(session.get(Group, facts.id), settings).method
        steps.append(Step(facts.id, facts.name, step, method, detail))
    for g in session.execute(select(Group).where(Group.status.in_((DISSOLVING, RESTORING))).order_by(Group.id)).scalars():
        st = g.dissolve_state or {}
        if g.status == RESTORING or g.dissolve_method == "appchat":
            todo = RESTORE_STEPS if g.status == RESTORING else DISSOLVE_STEPS
            done = (st.get("restore") or {}).get("done", []) if g.status == RESTORING else st.get("done", [])
            steps.append(Step(g.id, g.name, "resume", "appchat",
                              ("恢复" if g.status == RESTORING else "解散") + "：" +
                              "、".join(labels.label("step", s) for s in todo if s not in done)))
        elif g.dissolve_method == "order" and g.order_deadline and g.order_deadline <= now and not st.get("escalated_at"):
            steps.append(Step(g.id, g.name, "escalate", "order", "解散通知逾期未执行"))
    return steps


def _sweep_lock(db):
    """A session-level advisory lock on PostgreSQL so two sweeps never run together."""
    if db.dialect != "postgresql":
        return None
    conn = db.engine.connect()
    got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _SWEEP_LOCK}).scalar()
    conn.commit()
    if not got:
        conn.close()
        return False
    return conn


def sweep(db, now: datetime, settings, *, apply: bool = False, sender=None) -> SweepReport:
    """Advance every group's lifecycle at ``now``.  Dry run unless ``apply``.

    ``db`` is a ``storage.db.Database``; ``sender`` a ``platforms.base.Sender`` for appchat
    steps (None: appchat groups wait in ``dissolving``).  Each group is handled in its own
    transaction; running it twice does nothing more the second time."""
    report = SweepReport(now=now, applied=apply)
    if not apply:
        with db.session() as s:
            findings = compute_findings(s, now, settings)
            report.findings = len(findings)
            report.steps = plan(s, now, settings, findings)
            s.rollback()
        return report
    lock = _sweep_lock(db)
    if lock is False:
        report.locked_out = True
        return report
    try:
        with db.session() as s:
            findings = refresh_findings(s, now, settings)
        report.findings = len(findings)
        by_group: dict[str, list[Finding]] = defaultdict(list)
        for f in findings:
            if f.group_ids and f.action in ("warn", "dissolve", "merge"):
                by_group[f.group_ids[0]].append(f)
        with db.session() as s:
            steps = plan(s, now, settings, findings)
        for step in steps:
            if step.action == "resume":
                continue
            try:
                with db.session() as s:
                    step.result = _apply(s, step, by_group.get(step.group_id, []), now, settings)
            except LifecycleError as e:
                step.result, step.detail = "skipped", str(e)
            except Exception as e:  # one group's failure must not stop the others
                log.exception("sweep step failed for %s", step.group_id)
                step.result, step.detail = "error", "处理出错，详见服务日志"
        report.steps = [st for st in steps if st.action != "resume"]  # replaced by what really ran:
        for st in advance_pending(db, now, settings, sender):
            report.steps.append(st)
        if any(st.result in ("done", "pending") for st in report.steps):
            # persist findings as they stand after the changes, so a second run is a no-op
            with db.session() as s:
                refresh_findings(s, now, settings)
        return report
    finally:
        if lock:
            lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _SWEEP_LOCK})
            lock.close()


def _apply(s: Session, step: Step, findings: list[Finding], now: datetime, settings) -> str:
    g = _locked(s, step.group_id)
    if g is None:
        return "skipped"
    params = params_from(settings)
    if step.action == "warn":
        if g.status != "active" or g.protected:
            return "skipped"
        members = frozenset(repo.member_ids(s, g.id))
        _warn(s, g, findings, _facts(g, members), now, settings)
        return "done"
    if step.action == "unwarn":
        if g.status != "warned":
            return "skipped"
        g.warned_at = g.warning_sent_at = None
        _set_status(g, "active", now, "已不再符合解散条件")
        audit.record(s, actor=SYSTEM, action="unwarn", at=now, group_id=g.id, reason="已不再符合解散条件")
        s.flush()
        premises.settle(s, [g.id], now, settings)
        return "done"
    if step.action == "dissolve":
        if g.status != "warned":
            return "skipped"  # already dissolving/dissolved or vetoed since the plan
        transition(_state(g), "dissolve", now, params)  # protected? warning sent? grace elapsed?
        reason = "；".join(r for f in findings for r in f.reasons) or (g.status_reason or "长期无工作消息")
        step.method = begin_dissolution(s, g, now, settings, actor=SYSTEM, reason=reason)
        return "pending" if step.method != "order" else "done"
    if step.action == "purge":
        if g.status != "dissolved":
            return "skipped"
        transition(_state(g), "purge", now, params)
        state = dict(g.dissolve_state or {})
        state.pop("members", None)
        state["purged_at"] = now.isoformat()
        g.dissolve_state = state
        _set_status(g, "purged", now, f"解散满{params.restore_days}天")
        audit.record(s, actor=SYSTEM, action="purge", at=now, group_id=g.id, reason=f"解散满{params.restore_days}天，不再可恢复")
        return "done"
    if step.action == "escalate":
        st = dict(g.dissolve_state or {})
        if g.status != DISSOLVING or st.get("escalated_at"):
            return "skipped"
        st["escalated_at"] = now.isoformat()
        g.dissolve_state = st
        owner = repo.display_name(s, g.owner_id)
        n = _notify_commission(s, kind="order_overdue", at=now, group_id=g.id, key=f"order-overdue:{g.id}",
                               premise=premises.of("order_overdue", g),
                               text_=f"“{g.name}”（{g.unit or '未填单位'}，群主{owner}）的解散通知已逾期未执行。")
        audit.record(s, actor=SYSTEM, action="order_escalate", at=now, group_id=g.id, reason="解散通知逾期未执行",
                     data={"deadline": g.order_deadline.isoformat() if g.order_deadline else None, "notified": n})
        return "done"
    return "skipped"


# --- appchat steps -----------------------------------------------------------------------------
def _send_errors():
    from platforms.base import PermanentSendError, TransientSendError

    return TransientSendError, PermanentSendError


def _chat_members(sender, chat_id: str, fallback: list[str]) -> set[str] | None:
    try:
        info = sender.appchat_get(chat_id)
    except Exception as e:  # unknown membership: the caller falls back to what it recorded
        log.warning("appchat_get(%s) failed, using the recorded member list: %r", chat_id, e)
        return None
    info = info.get("chat_info", info) if isinstance(info, dict) else {}
    users = info.get("userlist") if isinstance(info, dict) else None
    return set(users) if isinstance(users, list) else None


def advance_pending(db, now: datetime, settings, sender) -> list[Step]:
    """Carry out the platform steps of appchat groups in ``dissolving``/``restoring``.

    The scheduler may call this often (e.g. every minute) so a 恢复 takes effect quickly."""
    with db.session() as s:
        ids = list(s.execute(select(Group.id).where(
            or_(Group.status == RESTORING, and_(Group.status == DISSOLVING, Group.dissolve_method == "appchat")))
            .order_by(Group.id)).scalars())
    out = []
    for gid in ids:
        out.append(_advance_one(db, gid, now, settings, sender))
    return out


def _advance_one(db, gid: str, now: datetime, settings, sender) -> Step:
    transient, permanent = _send_errors()
    with db.session() as s:
        g = s.get(Group, gid)
        restoring = g.status == RESTORING
        st = dict(g.dissolve_state or {})
        name = st.get("name") or g.name
        step = Step(gid, g.name, "resume", "appchat", "恢复" if restoring else "解散")
    if sender is None:
        step.result, step.detail = "pending", step.detail + "：等待企业微信发送通道"
        return step
    todo = RESTORE_STEPS if restoring else DISSOLVE_STEPS
    members = [m for m in st.get("members", []) if m != st.get("owner")]
    days = settings.restore_days
    for name_ in todo:
        done = (st.get("restore") or {}).get("done", []) if restoring else st.get("done", [])
        if name_ in done:
            continue
        try:
            if not restoring and name_ == "notice":
                sender.appchat_send_text(gid, f"本群已较长时间没有工作消息，现按治理安排解散。{days}天内群主可恢复。")
            elif not restoring and name_ == "remove":
                current = _chat_members(sender, gid, members)
                todel = [m for m in members if current is None or m in current]
                if todel:
                    sender.appchat_update(gid, del_user_list=todel)
            elif name_ == "rename":
                sender.appchat_update(gid, name=name if restoring else (DISSOLVED_PREFIX + name)[:50])
            elif restoring and name_ == "add":
                current = _chat_members(sender, gid, [])
                toadd = [m for m in members if current is None or m not in current]
                if toadd:
                    sender.appchat_update(gid, add_user_list=toadd)
            elif restoring and name_ == "notice":
                sender.appchat_send_text(gid, f"本群已恢复，{len(members)}位成员已重新加入。")
        except transient as e:
            with db.session() as s:
                g = _locked(s, gid)
                st2 = dict(g.dissolve_state or {})
                st2["last_error"] = str(e)[:300]
                g.dissolve_state = st2
            step.result, step.detail = "pending", f"{step.detail}：{labels.label('step', name_)}暂时失败，下次重试"
            return step
        except permanent as e:
            with db.session() as s:
                g = _locked(s, gid)
                _permanent_failure(s, g, restoring, str(e), now, settings)
            step.result, step.detail = "error", f"{step.detail}：平台拒绝{labels.label('step', name_)}，已改为人工处理"
            return step
        with db.session() as s:  # record progress right after the call succeeded
            g = _locked(s, gid)
            st = dict(g.dissolve_state or {})
            if restoring:
                r = dict(st.get("restore") or {})
                r["done"] = list(r.get("done", [])) + [name_]
                st["restore"] = r
            else:
                st["done"] = list(st.get("done", [])) + [name_]
            g.dissolve_state = st
    with db.session() as s:
        g = _locked(s, gid)
        if restoring and g.status == RESTORING:
            g.dissolved_at = None
            _set_status(g, "active", now, "恢复")
            audit.record(s, actor=SYSTEM, action="restore_done", at=now, group_id=gid, reason="成员已重新加入",
                         data={"members": len(members)})
        elif not restoring and g.status == DISSOLVING:
            _finish(s, g, now, settings, actor=SYSTEM)
    step.result = "done"
    return step


def _permanent_failure(s: Session, g: Group, restoring: bool, error: str, now: datetime, settings) -> None:
    st = dict(g.dissolve_state or {})
    st["last_error"] = error[:300]
    if restoring:
        g.dissolve_state = st
        g.dissolved_at = None
        _set_status(g, "active", now, "恢复（平台未能拉回成员）")
        audit.record(s, actor=SYSTEM, action="restore_done", at=now, group_id=g.id, reason="平台拒绝，需群主手动拉回成员",
                     data={"error": error[:300]})
        for pid in _responsible(s, g):
            notify(s, person_id=pid, kind="restore_manual", group_id=g.id, at=now, urgent=True,
                   text=f"“{g.name}”已恢复登记，但未能自动拉回成员，请手动邀请原成员入群。",
                   dedupe_key=f"restore-manual:{g.id}:{now.isoformat()}:{pid}"[:200],
                   premise=premises.of("restore_manual", g))
        return
    audit.record(s, actor=SYSTEM, action="dissolve_fallback", at=now, group_id=g.id, reason="平台拒绝，改为解散通知",
                 data={"error": error[:300]})
    _order(s, g, st, now, settings, actor=SYSTEM)
    g.dissolve_state = st
