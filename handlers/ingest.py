"""Plain activity, many events at a time: what ``handle_event`` answers them with, for the rows
``storage.ingest.store`` stored (the group-commit writer's bulk path)."""
from __future__ import annotations

import logging
from typing import Sequence, Union

from sqlalchemy.orm import Session

from governance.events import Reply
from handlers.context import Services
from handlers.dispatch import Planned, planned_replies, stored_reply
from storage import ingest
from storage.db import Database

log = logging.getLogger("qunzhi.handlers")


def store_plain(target: Union[Session, Database], plans: Sequence[Planned], services: Services) -> list[list[Reply]]:
    """``handle_event`` for the leading ``plans`` (all ``bulk``, in order) with the same end state
    and replies, stored by ``storage.ingest.store`` in ``target`` (a session's transaction, or
    its own). Returns the replies of the plans it took: up to the first hint-message from a
    sender in a dialogue (that text is the dialogue's next answer, for the per-event path).
    Raises on a database error (the caller rolls back and goes event by event)."""
    stored = ingest.store(target, [ingest.Item(p.event, p.key, p.hint) for p in plans],
                          store_text=services.settings.store_message_text)
    out: list[list[Reply]] = []
    for i, (p, outcome) in enumerate(zip(plans, stored.outcomes)):
        determined = planned_replies(p)
        if outcome == ingest.REPEAT:
            log.info("duplicate event %s: nothing stored, answered as the first time", p.key[:200])
            first = stored.replies.get(i)
            out.append(stored_reply(first) if first is not None else determined)
        elif outcome == ingest.FOREIGN:
            e = p.event
            log.warning("event %s from platform %r names group %s of another platform: not applied",
                        e.dedupe_key, e.platform, e.group_id)
            out.append([])
        else:
            out.append(determined)
    return out
