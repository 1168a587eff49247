"""``qunzhi reconcile``: the ledger's rows without platform ids against the groups the platforms show
(read only; the matching itself is ``governance.reconcile``)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from governance.reconcile import GroupView, reconcile
from storage.models import Group, Membership

_GONE = ("dissolved", "purged", "merged")


def reconcile_ledger(session: Session) -> dict:
    """The reconciliation as the documented JSON: ``matched`` [{ledger_id, group_id, confidence, ...}],
    ``unregistered`` [group_id], ``missing`` [ledger_id], ``review`` [{ledger_id, candidates}], and
    ``details`` {id: {name, unit}} for every id named (for people reading it)."""
    t = Group.__table__
    rows = session.execute(select(t.c.id, t.c.name, t.c.unit, t.c.registered_at, t.c.source, t.c.ledger_names)
                           .where(t.c.status.not_in(_GONE))).all()
    members: dict[str, set[str]] = {}
    for gid, pid in session.execute(select(Membership.group_id, Membership.person_id)
                                    .join(Group, Group.id == Membership.group_id)
                                    .where(Group.status.not_in(_GONE))):
        members.setdefault(gid, set()).add(pid)
    info = {r.id: r for r in rows}
    ledger, groups = [], []
    for r in rows:
        ms = frozenset(members.get(r.id, ()))
        if r.id.startswith("ledger:"):
            ledger.append(GroupView(r.id, r.name, r.unit, ms | frozenset(r.ledger_names or ()), True))
        else:
            groups.append(GroupView(r.id, r.name, r.unit, ms, r.registered_at is not None or r.source == "ledger"))
    out = reconcile(ledger, groups)

    mentioned = {m.ledger_id for m in out.matched} | {m.group_id for m in out.matched} | set(out.ledger_only) \
        | set(out.unregistered) | {r.ledger_id for r in out.review} | {c for r in out.review for c in r.candidates}
    return {
        "matched": [{"ledger_id": m.ledger_id, "group_id": m.group_id, "confidence": m.confidence,
                     "ledger_name": info[m.ledger_id].name, "ledger_unit": info[m.ledger_id].unit,
                     "group_name": info[m.group_id].name, "by": m.by, "name_similarity": m.name_similarity,
                     "member_jaccard": m.member_jaccard} for m in out.matched],
        "unregistered": list(out.unregistered),
        "missing": list(out.ledger_only),
        "review": [{"ledger_id": r.ledger_id, "candidates": list(r.candidates)} for r in out.review],
        "details": {x: {"name": info[x].name, "unit": info[x].unit} for x in sorted(mentioned)},
    }
