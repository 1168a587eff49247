"""What the bot sees of each group's traffic (``groups.activity_source``: full, mentions, counts,
archive, none; ``governance.labels.ACTIVITY_SOURCES``).

Set where a group is created or first listed by the bot (建群, the sync job: ``source_for``), and
for the groups the ingest path created, filled in bulk by :func:`fill_activity_sources` (one
``UPDATE`` per platform value with unset groups, run by the scheduler before each findings refresh
and sweep): the ingest path pays nothing per message. A value already set (e.g. ``counts`` from a
DingTalk activity import) is never overwritten here.
"""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.models import Group

#: platform values known from files only (no adapter behind them): what the bot sees of them
FILE_SOURCES = {"ledger": "none", "archive": "archive"}


def fill_activity_sources(session: Session, default_for: Callable[[str], str | None]) -> int:
    """Give every group without an activity source its platform's default (``default_for``:
    platform value → source, None to leave it unset); returns how many groups were set."""
    values = list(session.execute(select(Group.platform).where(Group.activity_source.is_(None)).distinct()).scalars())
    n = 0
    for value in values:
        source = FILE_SOURCES.get(value or "") or default_for(value or "")
        if source:
            n += session.execute(update(Group).where(Group.platform == value, Group.activity_source.is_(None))
                                 .values(activity_source=source)).rowcount or 0
    return n
