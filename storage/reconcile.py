"""``qunzhi reconcile``: the ledger's rows without platform ids against the groups the platforms show
(the matching itself is ``governance.reconcile``), and what an administrator decides about the
ambiguous ones: :func:`link` (the ledger entry and the platform group become one group, for good)
and :func:`reject` (the pair is never proposed again). Both are audited.

The questions go to the unit's administrators (else the admins) as a notice (batched into their
digest, within working time and the weekly budget, ``storage.notices``) and a pending question
(``Conversation`` with intent :data:`INTENT`; its continuation is ``handlers.commands.reconcile_review``),
answered with one tap: ``确认 1`` / ``不是``.
"""
from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from governance.lifecycle import LifecycleError, transition
from governance.reconcile import GroupView, reconcile
from governance.text import normalize, strip_symbols
from storage import audit
from storage.models import Conversation, Group, LedgerLink, LedgerRejection, Membership, Notice, Person
from storage.outbox import notify

log = logging.getLogger("qunzhi.reconcile")

_GONE = ("dissolved", "purged", "merged")
INTENT = "reconcile_review"
NOTICE_KIND = "reconcile_review"
CONFIRMED = "confirmed"  # ``by`` of a matched pair an administrator confirmed
#: what a confirmed ledger entry gives the platform group where the group has nothing of its own
_TAKEN = ("owner_id", "unit", "category", "purpose", "expires_at", "note", "registered_at", "registered_by")


class ReconcileError(ValueError):
    """A refusal, in Chinese for the person who asked; nothing was changed."""


def links(session: Session) -> dict[str, str]:
    """Confirmed ledger entries: ledger id -> group id."""
    return dict(session.execute(select(LedgerLink.ledger_id, LedgerLink.group_id)).all())


def rejections(session: Session) -> set[tuple[str, str]]:
    return set(session.execute(select(LedgerRejection.ledger_id, LedgerRejection.group_id)).all())


def reconcile_ledger(session: Session) -> dict:
    """The reconciliation as the documented JSON: ``matched`` [{ledger_id, group_id, confidence, ...}],
    ``unregistered`` [group_id], ``missing`` [ledger_id], ``review`` [{ledger_id, candidates}], and
    ``details`` {id: {name, unit}} for every id named (for people reading it). Confirmed links are
    matched with confidence 1 (``by`` ``confirmed``); rejected pairs are never proposed."""
    t = Group.__table__
    rows = session.execute(select(t.c.id, t.c.name, t.c.unit, t.c.registered_at, t.c.source, t.c.ledger_names,
                                  t.c.platform, t.c.member_count)
                           .where(t.c.status.not_in(_GONE))).all()
    members: dict[str, set[str]] = {}
    for gid, pid in session.execute(select(Membership.group_id, Membership.person_id)
                                    .join(Group, Group.id == Membership.group_id)
                                    .where(Group.status.not_in(_GONE))):
        members.setdefault(gid, set()).add(pid)
    info = {r.id: r for r in rows}
    linked = {lk.group_id: lk for lk in session.execute(select(LedgerLink)).scalars()}
    ledger, groups = [], []
    for r in rows:
        ms = frozenset(members.get(r.id, ()))
        if r.id.startswith("ledger:"):
            ledger.append(GroupView(r.id, r.name, r.unit, ms | frozenset(r.ledger_names or ()), True))
        elif r.id not in linked:  # a linked group has its ledger entry already
            groups.append(GroupView(r.id, r.name, r.unit, ms, r.registered_at is not None or r.source == "ledger"))
    out = reconcile(ledger, groups, rejected=rejections(session))

    mentioned = {m.ledger_id for m in out.matched} | {m.group_id for m in out.matched} | set(out.ledger_only) \
        | set(out.unregistered) | {r.ledger_id for r in out.review} | {c for r in out.review for c in r.candidates}
    details = {x: {"name": info[x].name, "unit": info[x].unit} for x in sorted(mentioned)}
    matched = [{"ledger_id": m.ledger_id, "group_id": m.group_id, "confidence": m.confidence,
                "ledger_name": info[m.ledger_id].name, "ledger_unit": info[m.ledger_id].unit,
                "group_name": info[m.group_id].name, "by": m.by, "name_similarity": m.name_similarity,
                "member_jaccard": m.member_jaccard} for m in out.matched]
    for gid, lk in sorted(linked.items(), key=lambda x: x[1].ledger_id):
        if gid not in info:
            continue  # the group is gone (dissolved, merged): neither matched nor missing
        matched.append({"ledger_id": lk.ledger_id, "group_id": gid, "confidence": 1.0, "ledger_name": lk.ledger_name,
                        "ledger_unit": lk.ledger_unit, "group_name": info[gid].name, "by": CONFIRMED,
                        "name_similarity": None, "member_jaccard": None})
        details[lk.ledger_id] = {"name": lk.ledger_name, "unit": lk.ledger_unit}
        details[gid] = {"name": info[gid].name, "unit": info[gid].unit}
    matched.sort(key=lambda m: m["ledger_id"])
    return {
        "matched": matched,
        "unregistered": list(out.unregistered),
        "missing": list(out.ledger_only),
        "review": [{"ledger_id": r.ledger_id, "candidates": list(r.candidates)} for r in out.review],
        "details": dict(sorted(details.items())),
    }


# --- deciding ---------------------------------------------------------------------------------------
def _locked(session: Session, gid: str) -> Group | None:
    stmt = select(Group).where(Group.id == gid)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()


def _same_unit(a: str | None, b: str | None) -> bool:
    return strip_symbols(normalize(a or "")) == strip_symbols(normalize(b or ""))


def may_review(person: Person | None, unit: str | None) -> bool:
    """An admin, or the unit administrator of the ledger entry's unit."""
    if person is None:
        return False
    if person.role == "admin":
        return True
    return person.role == "unit_admin" and bool(unit) and _same_unit(person.unit, unit)


def reviewers(session: Session, unit: str | None) -> list[str]:
    """Who is asked about a ledger entry: its unit's administrators, else the admins."""
    if unit:
        ids = [p.id for p in session.execute(select(Person).where(Person.role == "unit_admin")
                                             .order_by(Person.id)).scalars() if _same_unit(p.unit, unit)]
        if ids:
            return ids
    return list(session.execute(select(Person.id).where(Person.role == "admin").order_by(Person.id)).scalars())


def _ledger_entry(session: Session, ledger_id: str) -> Group:
    lk = session.get(LedgerLink, ledger_id)
    if lk is not None:
        g = session.get(Group, lk.group_id)
        raise ReconcileError(f"台账中的“{lk.ledger_name}”已确认就是群“{g.name if g else lk.group_id}”，无需再确认。")
    entry = _locked(session, ledger_id)
    if entry is None or not ledger_id.startswith("ledger:"):
        raise ReconcileError("没有找到这条台账记录（可能已重新导入或已处理）。")
    if entry.status in _GONE:
        raise ReconcileError(f"台账中的“{entry.name}”已不在治理中，不能再对应。")
    return entry


def entry_name(session: Session, ledger_id: str) -> str:
    """The name of a ledger entry still to decide (``ReconcileError`` if there is none)."""
    entry = session.get(Group, ledger_id) if ledger_id.startswith("ledger:") else None
    if entry is None:
        lk = session.get(LedgerLink, ledger_id)
        raise ReconcileError("这条台账记录已确认过对应的群。" if lk else "没有找到这条台账记录（可能已重新导入或已处理）。")
    return entry.name


def link(session: Session, ledger_id: str, group_id: str, *, actor: str, now: datetime, settings) -> Group:
    """A confirmed match: the ledger entry and the platform group become ONE group. The group takes
    what the entry registers and it lacks (owner, unit, category, purpose, expiry, note, registration;
    protected if either is; the earlier creation date; the ledger's unresolved member names), the
    entry's row is removed, and ``ledger_links`` records the link, so a re-import of the ledger writes
    to the group and the entry is never a zombie or a duplicate of its twin. Audited (``link``) on
    the group with the entry's id; the entry's own history stays readable under its id.

    Refused (``ReconcileError``, nothing changed): an entry already linked, a group already linked to
    another entry (never two platform groups for one entry, nor two entries for one group), a group
    that is itself a ledger entry or no longer live."""
    entry = _ledger_entry(session, ledger_id)
    if group_id.startswith("ledger:"):
        raise ReconcileError("只能对应到平台上的群，不能对应到另一条台账记录。")
    other = session.execute(select(LedgerLink).where(LedgerLink.group_id == group_id)).scalar_one_or_none()
    if other is not None:
        raise ReconcileError(f"该群已与台账中的“{other.ledger_name}”对应，一个群只能对应一条台账记录。")
    g = _locked(session, group_id)
    if g is None:
        raise ReconcileError("没有找到这个群。")
    from storage.lifecycle.transitions import state_of

    try:
        transition(state_of(g), "link", now)
    except LifecycleError as e:
        raise ReconcileError(f"“{g.name}”：{e}") from None
    taken: dict[str, object] = {}
    for f in _TAKEN:
        mine, theirs = getattr(g, f), getattr(entry, f)
        if (mine is None or mine == "") and theirs not in (None, ""):
            setattr(g, f, theirs)
            taken[f] = theirs.isoformat() if hasattr(theirs, "isoformat") else theirs
    if entry.protected and not g.protected:
        g.protected, taken["protected"] = True, True
    if entry.temporary and not g.temporary and ({"category", "expires_at"} & set(taken)):
        g.temporary, taken["temporary"] = True, True  # the ledger says what kind of group it is
    if entry.created_at and g.created_at and entry.created_at < g.created_at:
        g.created_at, taken["created_at"] = entry.created_at, entry.created_at.isoformat()
    names = sorted(set(g.ledger_names or ()) | set(entry.ledger_names or ()))
    if names != sorted(g.ledger_names or ()):
        g.ledger_names, taken["ledger_names"] = names, names
    g.updated_at = now
    ledger_name, ledger_unit = entry.name, entry.unit
    session.execute(delete(Membership).where(Membership.group_id == ledger_id))
    session.execute(delete(LedgerRejection).where(LedgerRejection.ledger_id == ledger_id,
                                                  LedgerRejection.group_id == group_id))
    session.delete(entry)
    session.flush()
    session.add(LedgerLink(ledger_id=ledger_id, group_id=group_id, ledger_name=ledger_name, ledger_unit=ledger_unit,
                           linked_at=now, linked_by=actor))
    audit.record(session, actor=actor, action="link", at=now, group_id=group_id,
                 reason=f"台账中的“{ledger_name}”确认就是群“{g.name}”，合为一个群",
                 data={"ledger_id": ledger_id, "ledger_name": ledger_name, "ledger_unit": ledger_unit, "taken": taken})
    from storage.lifecycle import groups_changed

    groups_changed(session, [group_id, ledger_id], now, settings, actor=actor)
    log.info("ledger entry %s linked to group %s by %s", ledger_id, group_id, actor)
    return g


def reject(session: Session, ledger_id: str, group_ids: list[str], *, actor: str, now: datetime) -> int:
    """The entry is none of ``group_ids``: each pair is stored and never proposed again. Audited
    (``link_reject``). Returns how many pairs were new."""
    entry = _ledger_entry(session, ledger_id)
    ids = sorted({g for g in group_ids if g and g != ledger_id})
    if not ids:
        raise ReconcileError("没有要否认的群。")
    known = rejections(session)
    new = [g for g in ids if (ledger_id, g) not in known]
    for gid in new:
        session.add(LedgerRejection(ledger_id=ledger_id, group_id=gid, rejected_at=now, rejected_by=actor))
    if new:
        session.flush()
        audit.record(session, actor=actor, action="link_reject", at=now, group_id=ledger_id,
                     reason=f"台账中的“{entry.name}”不是{'、'.join(_names(session, new))}",
                     data={"ledger_id": ledger_id, "groups": new})
    return len(new)


def _names(session: Session, ids: list[str]) -> list[str]:
    got = dict(session.execute(select(Group.id, Group.name).where(Group.id.in_(ids))).all())
    return [f"“{got.get(i, i)}”" for i in ids]


def entry_names(session: Session) -> dict[str, str]:
    """Confirmed ledger entries' ids -> how people read them (their rows are gone, their audit stays)."""
    return {lid: f"{name}（台账）" for lid, name in session.execute(select(LedgerLink.ledger_id, LedgerLink.ledger_name))}


def history_ids(session: Session, group_id: str) -> list[str]:
    """The ids a group's history is recorded under: its own and its confirmed ledger entry's."""
    return [group_id, *session.execute(select(LedgerLink.ledger_id).where(LedgerLink.group_id == group_id)).scalars()]


# --- asking in chat ---------------------------------------------------------------------------------
def open_items(session: Session, items: list[dict]) -> list[dict]:
    """The review items still open: the entry still unlinked and live, candidates still live, not
    linked elsewhere and not rejected (an item without candidates left is dropped)."""
    if not items:
        return []
    rej, taken = rejections(session), set(links(session).values())
    ids = {i["ledger_id"] for i in items} | {c for i in items for c in i["candidates"]}
    live = set(session.execute(select(Group.id).where(Group.id.in_(sorted(ids)), Group.status.not_in(_GONE))).scalars())
    out = []
    for it in items:
        if it["ledger_id"] not in live:
            continue
        cands = [c for c in it["candidates"] if c in live and c not in taken and (it["ledger_id"], c) not in rej]
        if cands:
            out.append({"ledger_id": it["ledger_id"], "candidates": cands})
    return out


def question(session: Session, item: dict, *, left: int = 1) -> str:
    """The one-tap question about one review item (Chinese, no codes)."""
    from governance import labels

    entry = session.get(Group, item["ledger_id"])
    groups = {g.id: g for g in session.execute(select(Group).where(Group.id.in_(item["candidates"]))).scalars()}
    unit = f"（{entry.unit}）" if entry.unit else ""
    lines = [f"台账核对{'（共' + str(left) + '条待确认）' if left > 1 else ''}：台账中的“{entry.name}”{unit}是下面哪个群？"]
    for n, gid in enumerate(item["candidates"], 1):
        g = groups.get(gid)
        if g is None:
            continue
        where = "，".join(x for x in (g.unit or "", labels.label("platform", g.platform), f"{g.member_count}人") if x)
        lines.append(f"{n}. “{g.name}”（{where}）")
    first = "回复“确认 1”表示第1个就是它" if len(item["candidates"]) == 1 else \
        f"回复“确认 1”至“确认 {len(item['candidates'])}”选出就是它的那个群"
    lines.append(f"{first}，回复“不是”表示都不是；回复“稍后”暂不处理。也可在看板“台账核对”页处理。")
    return "\n".join(lines)


def ask_reviews(session: Session, now: datetime, settings) -> int:
    """Put the open review items to the people who decide them: for each reviewer (``reviewers``)
    with no other dialogue under way, one notice (batched into their digest, quiet outside working
    hours) asking the first item, and the pending question holding all of theirs. The same set of
    items is asked at most once a week; a reviewer busy in another dialogue is asked at a later run.
    Returns how many notices were queued."""
    out = reconcile_ledger(session)
    by_person: dict[str, list[dict]] = defaultdict(list)
    for r in out["review"]:
        for pid in reviewers(session, out["details"][r["ledger_id"]]["unit"]):
            by_person[pid].append(r)
    week = now.astimezone(settings.tz).strftime("%G-W%V")
    queued = 0
    for pid, items in sorted(by_person.items()):
        conv = session.get(Conversation, pid)
        if conv is not None and conv.intent != INTENT:
            continue  # one pending question per person: ask once their dialogue is over
        digest = hashlib.sha256("|".join(sorted(i["ledger_id"] for i in items)).encode()).hexdigest()[:16]
        key = f"{NOTICE_KIND}:{pid}:{week}:{digest}"
        sent = session.execute(select(Notice.status).where(Notice.dedupe_key == key)).scalar_one_or_none()
        if sent is not None:
            if conv is not None:
                conv.data = {"items": items}
                if sent in ("pending", "held"):
                    conv.updated_at = now  # not delivered yet: the answer window starts later
            continue
        # about the first entry asked: confirmed elsewhere before it goes out (its row folded into the
        # group), the notice is withdrawn (storage.premises)
        notify(session, person_id=pid, kind=NOTICE_KIND, text=question(session, items[0], left=len(items)), at=now,
               dedupe_key=key, group_id=items[0]["ledger_id"], premise={"status": ["active", "warned"]})
        if conv is None:
            conv = Conversation(person_id=pid, intent=INTENT, data={}, updated_at=now)
            session.add(conv)
        conv.data, conv.updated_at = {"items": items}, now
        queued += 1
    if queued:
        log.info("reconcile review: %d question(s) queued", queued)
    return queued


# --- the dashboard page and the report sheet ------------------------------------------------------
def page(session: Session) -> dict:
    """The reconciliation for people: every list with names, units, platforms and member counts
    (the dashboard's 台账核对 page and the report's sheet)."""
    rep = reconcile_ledger(session)
    ids = sorted(set(rep["details"]))
    groups: dict[str, Group] = {}
    for i in range(0, len(ids), 500):
        groups.update((g.id, g) for g in session.execute(select(Group).where(Group.id.in_(ids[i:i + 500]))).scalars())

    def one(gid: str) -> dict:
        g, d = groups.get(gid), rep["details"].get(gid, {})
        return {"id": gid, "name": d.get("name") or (g.name if g else gid), "unit": d.get("unit") or "",
                "platform": g.platform if g else "ledger", "members": g.member_count if g else 0}

    return {
        "review": [{"ledger": one(r["ledger_id"]), "candidates": [one(c) for c in r["candidates"]]}
                   for r in rep["review"]],
        "matched": [{"ledger": {"id": m["ledger_id"], "name": m["ledger_name"], "unit": m["ledger_unit"] or ""},
                     "group": one(m["group_id"]), "confidence": m["confidence"], "by": m["by"]} for m in rep["matched"]],
        "missing": [one(x) for x in rep["missing"]],
        "unregistered": [one(x) for x in rep["unregistered"]],
    }
