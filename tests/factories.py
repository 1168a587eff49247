"""Small factories for neutral events and a chat driver that goes through the real dispatch."""
from __future__ import annotations

import itertools
from datetime import datetime

from handlers.dispatch import handle_event
from governance.events import Event

_ids = itertools.count(1)


def message(sender: str, text: str, at: datetime, *, group: str | None = None, platform: str = "wecom",
            msg_id: str | None = None, mentioned: bool | None = None, group_name: str | None = None) -> Event:
    return Event(platform=platform, kind="message", sender_id=sender, at=at, text=text, group_id=group,
                 msg_id=msg_id or f"m{next(_ids)}", mentioned_bot=bool(group) if mentioned is None else mentioned,
                 group_name=group_name)


class Chat:
    """Talk to the bot as a cadre would; each line is its own transaction, as on WeCom."""

    def __init__(self, runtime, clock):
        self.runtime = runtime
        self.clock = clock

    def say(self, sender: str, text: str, **kw) -> str:
        ev = message(sender, text, self.clock(), **kw)
        with self.runtime.db.session() as s:
            replies = handle_event(s, ev, self.runtime.services)
        return "\n".join(r.text for r in replies)
