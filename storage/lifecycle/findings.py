"""Findings: every rule over the ledger (:func:`compute_findings`), persisted by key
(:func:`refresh_findings`), or the per-group rules of a few groups right after a command
(:func:`refresh_group_findings`, :func:`groups_changed`)."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from governance.lifecycle import LIVE
from governance.model import Finding
from governance.scan import PER_GROUP_KINDS, per_group, scan
from governance.rules import OWN_CONDITION
from storage import premises, repo
from storage.lifecycle.facts import Facts, group_facts, load_facts, params_from, today, with_counts
from storage.models import FindingRecord, FindingRefresh, Group, Membership

# Findings the scan does not produce (storage.feedback writes "useless" from anonymous votes): the
# scan's absence says nothing about them, their own source resolves them.
OWN_CONDITION_KINDS = tuple(k.code for k in OWN_CONDITION)  # declared in governance.rules


def compute_findings(session: Session, now: datetime, settings, *, facts: Facts | None = None) -> list[Finding]:
    """Every rule over the current ledger (``facts``: already loaded); changes nothing."""
    if facts is None:
        facts = load_facts(session, now, settings)
    # local time: the dates written into the reasons are the ones cadres see on their calendar
    return scan(facts.live, now.astimezone(settings.tz), params_from(settings), facts.gone,
                today=today(now, settings))


def refresh_findings(session: Session, now: datetime, settings, *, facts: Facts | None = None) -> list[Finding]:
    """Run the scan and persist it: upsert by ``Finding.key``, resolve what is no longer seen
    (never the ``useless`` findings: those come from anonymous votes, not from the scan)."""
    findings = compute_findings(session, now, settings, facts=facts)
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
    ids = sorted(set(group_ids))
    if not ids:
        return []
    groups = list(session.execute(select(Group).where(Group.id.in_(ids))).scalars())
    members: dict[str, set[str]] = defaultdict(set)
    for gid, pid in session.execute(select(Membership.group_id, Membership.person_id)
                                    .where(Membership.group_id.in_(ids))):
        members[gid].add(pid)
    live = [group_facts(g, frozenset(members.get(g.id, ()))) for g in groups if g.status in LIVE]
    live = with_counts(session, live, now, params_from(settings))
    findings = per_group(live, now.astimezone(settings.tz), params_from(settings), today=today(now, settings))
    by_key = {f.key: f for f in findings}
    # the keys these groups' per-group findings can have (unregistered names the owner, if known)
    candidates = {Finding(kind, [g.id], persons, 0.0, "review", []).key
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
