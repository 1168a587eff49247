"""Run every rule (:data:`governance.rules.RULES`) over a snapshot of groups: ``scan(groups, now, params, dissolved)``.

Deterministic: findings are sorted by kind (in :data:`governance.rules.FINDING_KINDS`
order), then group ids, then person ids.  De-duplicate across scans with
``Finding.key``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from governance.model import Finding, GroupFacts, Params
from governance.rules import FINDING_KINDS, PER_GROUP_KINDS, RULES, Snapshot

__all__ = ["scan", "per_group", "kinds_by_group", "PER_GROUP_KINDS"]

_KIND_ORDER = {k: i for i, k in enumerate(FINDING_KINDS)}
_PER_GROUP = tuple(r.per_group for r in RULES if r.per_group is not None)
_OVER_SNAPSHOT = tuple(r.over_snapshot for r in RULES if r.over_snapshot is not None)


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
    snapshot = Snapshot(groups=groups, dissolved=list(dissolved), now=now, params=params, today=today)
    for check in _OVER_SNAPSHOT:
        findings.extend(check(snapshot))
    findings.sort(key=lambda f: (_KIND_ORDER.get(f.kind, 99), f.group_ids, f.person_ids))
    return findings


def per_group(groups: Iterable[GroupFacts], now: datetime, params: Params = Params(), *,
              today: date | None = None) -> list[Finding]:
    """The rules that look at one group at a time (:data:`PER_GROUP_KINDS`): cheap for a few
    groups. The member-set rules (duplicate, overlap, overloaded, rebound) need every group."""
    findings: list[Finding] = []
    for g in groups:
        for check in _PER_GROUP:
            f = check(g, now, params, today)
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
