"""The platform-neutral event and reply every adapter speaks (handlers never see XML or JSON)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

KINDS = ("message", "member_joined", "member_left", "group_created", "group_renamed", "card_click",
         "enter_chat", "dissolve_confirmed")


@dataclass(frozen=True)
class Event:
    platform: str               # wecom | aibot | bridge | local
    kind: str                   # one of KINDS
    sender_id: str              # who (platform user id)
    at: datetime                # when (aware)
    text: str = ""
    group_id: str | None = None  # which group, None for a direct chat
    msg_id: str | None = None    # platform-scoped dedupe key
    mentioned_bot: bool = False
    group_name: str | None = None
    member_ids: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def is_direct(self) -> bool:
        return self.group_id is None

    @property
    def addressed_to_bot(self) -> bool:
        return self.kind == "message" and (self.is_direct or self.mentioned_bot)

    @property
    def dedupe_key(self) -> str | None:
        if self.msg_id:
            return f"{self.platform}:{self.msg_id}"
        return None


@dataclass(frozen=True)
class Reply:
    """What the bot answers. ``card`` is an optional neutral one-tap card description."""

    text: str
    card: dict[str, Any] | None = None
    markdown: bool = False
