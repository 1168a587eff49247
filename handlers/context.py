"""What a handler gets: the session, the event, the person, a clock and the services.

Who may do what is declared on the commands (``handlers.permissions``), not asked of the context."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Callable

from sqlalchemy.orm import Session

from config.settings import Settings
from governance.capabilities import Capabilities
from governance.events import Event
from storage.models import Person


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Services:
    settings: Settings
    #: what the bot can do to a group, by platform (the platforms configured here:
    #: ``platforms.capabilities.table(settings)``); 合并 dissolves through it
    capabilities: Mapping[str, Capabilities]
    clock: Callable[[], datetime] = utcnow
    extra: dict[str, Any] = field(default_factory=dict)

    def now(self) -> datetime:
        return self.clock()


@dataclass
class Context:
    session: Session
    event: Event
    person: Person
    services: Services
    text: str  # normalised text of the message
    #: what the parser understood (``nlu.Parse``; None for a card or a non-command answer)
    parse: Any = None
    #: the command's slots: the parse's (group, target, period, reason, fields, text …) or, when a
    #: pending question is answered, the ones remembered with it plus the answer
    slots: dict[str, Any] = field(default_factory=dict)
    command: Any = None  # the command running (set by ``Command.run``)
    in_dialogue: bool = False  # a continuation runs: its own question is no replaced question
    #: groups already settled by a pending question (slot → group id), and whether a fuzzy match was confirmed
    settled: dict[str, str] = field(default_factory=dict)
    confirmed: bool = False
    settled_fuzzy: set[str] = field(default_factory=set)  # settled from a loose reference: echo the full name

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def now(self) -> datetime:
        return self.event.at

    @property
    def today(self) -> date:
        return self.now.astimezone(self.settings.tz).date()
