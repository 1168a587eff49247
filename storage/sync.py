"""The groups a platform lists (the sync job, ``scheduler.jobs.sync_groups``): recorded as seen
on that platform, their names and members brought up to date.

A listed group new here is stored as seen through an adapter (``source`` ``activity``, first seen
now, its platform's activity source); a known one gets the platform's name, and, while it is
live (active or warned), its members as the platform lists them: accounts are resolved to their
persons (a linked account to its person, else its natural person, created). Groups the
lifecycle is working on (dissolving, dissolved …) keep their rows: their member snapshot lives in
``dissolve_state`` and the platform's view of them is the lifecycle's business.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from storage import identity, repo
from storage.models import Group

LIVE = ("active", "warned")


@dataclass(frozen=True)
class Listed:
    chat_id: str
    name: str
    member_accounts: tuple[str, ...] | None  # None: the platform did not say


def group_id_for(platform: str, chat_id: str) -> str:
    """The stored id of a platform's group (WeCom's own ids, ``<platform>:<id>`` elsewhere)."""
    return identity.natural_id(identity.account_platform(platform), chat_id)


def record_listed(session: Session, platform: str, listed: Iterable[Listed], now: datetime, *,
                  activity: str | None) -> dict[str, int]:
    """Record what the platform listed; returns counts (new, renamed, members_added, members_removed)."""
    out = {"new": 0, "renamed": 0, "members_added": 0, "members_removed": 0}
    acc_platform = identity.account_platform(platform)
    for item in listed:
        gid = group_id_for(platform, item.chat_id)
        g = session.get(Group, gid)
        if g is not None and g.platform != platform:
            continue  # another platform's group under this id: never touched (repo.may_touch)
        if g is None:
            g = repo.ensure_group(session, group_id=gid, platform=platform, at=now, name=item.name or gid,
                                  source="activity")
            out["new"] += 1
        elif item.name and g.name != item.name and g.status in LIVE:
            g.name, g.updated_at = item.name, now
            out["renamed"] += 1
        if g.activity_source is None:
            g.activity_source = activity
        if item.member_accounts is None or g.status not in LIVE:
            continue
        persons = []
        for acc in dict.fromkeys(item.member_accounts):
            pid = identity.person_for(session, acc_platform, acc) or identity.natural_id(acc_platform, acc)
            repo.get_or_create_person(session, pid, now)
            persons.append(pid)
        current = set(repo.member_ids(session, gid))
        out["members_added"] += repo.add_members(session, gid, [p for p in persons if p not in current], now)
        gone = sorted(current - set(persons))
        if gone:
            out["members_removed"] += repo.remove_members(session, gid, gone)
            repo.refresh_member_count(session, gid)
        g.updated_at = now
    return out
