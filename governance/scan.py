"""Run every rule over a snapshot of groups: ``scan(groups, now, params, dissolved)``.

Deterministic: findings are sorted by kind (in :data:`governance.model.FINDING_KINDS`
order), then group ids, then person ids.  De-duplicate across scans with
``Finding.key``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from governance.model import FINDING_KINDS, Finding, GroupFacts, Params
from governance.rules_activity import expired, overloaded_members, unregistered, zombie
from governance.rules_members import duplicates_and_overlaps, rebounds

_KIND_ORDER = {k: i for i, k in enumerate(FINDING_KINDS)}


def scan(
    groups: Iterable[GroupFacts],
    now: datetime,
    params: Params = Params(),
    dissolved: Iterable[GroupFacts] = (),
    *,
    today: date | None = None,
) -> list[Finding]:
    """All findings for ``groups`` at ``now``.

    ``dissolved`` are recently dissolved groups (for rebound); ``today`` is the caller's
    local date for expiry (default: ``now.date()`` in ``now``'s time zone)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    groups = list(groups)
    findings = per_group(groups, now, params, today=today)
    findings.extend(duplicates_and_overlaps(groups, now, params))
    findings.extend(overloaded_members(groups, params))
    findings.extend(rebounds(groups, dissolved, now, params))
    findings.sort(key=lambda f: (_KIND_ORDER.get(f.kind, 99), f.group_ids, f.person_ids))
    return findings


PER_GROUP_KINDS = ("zombie", "expired", "unregistered")


def per_group(groups: Iterable[GroupFacts], now: datetime, params: Params = Params(), *,
              today: date | None = None) -> list[Finding]:
    """The rules that look at one group at a time (:data:`PER_GROUP_KINDS`): cheap for a few
    groups. The member-set rules (duplicate, overlap, overloaded, rebound) need every group."""
    findings: list[Finding] = []
    for g in groups:
        for f in (zombie(g, now, params), expired(g, now, params, today), unregistered(g, now, params)):
            if f is not None:
                findings.append(f)
    return findings


def kinds_by_group(findings: Iterable[Finding]) -> dict[str, set[str]]:
    """``{group_id: {kind, ...}}`` for the groups a finding proposes to act on
    (the first group id; person findings are left out).  Feeds
    :func:`governance.lifecycle.next_step`."""
    out: dict[str, set[str]] = {}
    for f in findings:
        if f.group_ids and f.action in ("warn", "dissolve", "merge"):
            out.setdefault(f.group_ids[0], set()).add(f.kind)
    return out
