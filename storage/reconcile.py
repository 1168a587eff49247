"""``qunzhi reconcile``: the ledger's rows without platform ids against the groups the platforms show
(read only; the matching itself is ``governance.reconcile``)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from governance.reconcile import GroupView, reconcile
from storage.models import Group, Membership

_GONE = ("dissolved", "purged", "merged")


def reconcile_ledger(session: Session) -> dict:
    """{"matched": [...], "ledger_only": [...], "unregistered": [...]} with ids, names and units."""
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

    def g(gid: str) -> dict:
        return {"group_id": gid, "name": info[gid].name, "unit": info[gid].unit}

    return {
        "matched": [{"ledger_id": m.ledger_id, "ledger_name": info[m.ledger_id].name,
                     "ledger_unit": info[m.ledger_id].unit, "group_id": m.group_id,
                     "group_name": info[m.group_id].name, "by": m.by, "name_similarity": m.name_similarity,
                     "member_jaccard": m.member_jaccard} for m in out.matched],
        "ledger_only": [g(x) for x in out.ledger_only],
        "unregistered": [g(x) for x in out.unregistered],
    }
