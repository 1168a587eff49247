"""What an event is, decided once, from the event alone (no database): :func:`classify`.

Dispatch (``handlers.dispatch.handle_event``), the dedupe key the runtime remembers replies under
(``stored_key``) and the group-commit writer's plan (``handlers.dispatch.plan``) all read the same
:class:`Classified`; nothing downstream matches the text again.

Where a text becomes a command is one function, :func:`resolve_command`. Issue 13's intent
resolver (``nlu.parse`` mapped to the registered commands) plugs in there and nowhere else: the
anonymity of the result, the stored key, the hint and the writer's bulk decision follow from it.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from governance.events import Event
from handlers import registry
from handlers.context import Services
from handlers.registry import Command
from handlers.text import normalize

#: Cards whose clicks must leave no trace of who clicked (the pulse, 这个群没用).
ANONYMOUS_CARDS = ("pulse", "useless")


@dataclass(slots=True)
class Classified:
    """One event, classified (made once, read by everything after: never changed)."""

    event: Event
    text: str                # normalised text of a message to the bot ("" otherwise)
    command: Command | None  # the command that message invokes
    args: str                # the rest of the text, the command's arguments
    anonymous: bool          # an anonymous command or card: nothing may link it to its sender
    key: str | None          # the dedupe key as stored in processed_events (why hashed: :func:`stored_key`)
    to_bot: bool             # a message the bot is asked to answer (a direct chat, or an @-mention)
    card: str | None         # the kind of card clicked (its continuation is ``card:<kind>``), else None

    @property
    def hint(self) -> bool:
        """A message to the bot that invokes no command: a dialogue's next answer, else the hint."""
        return self.to_bot and self.command is None

    @property
    def records_activity(self) -> bool:
        """Whether the event is recorded as its group's activity (never for an anonymous one)."""
        return bool(self.event.group_id) and not self.anonymous

    @property
    def plain(self) -> bool:
        """No command or card handler runs for it: only activity is recorded (the bulk paths' kind)."""
        return self.command is None and self.card is None and not self.anonymous


def resolve_command(text: str, event: Event, services: Services) -> tuple[Command, str] | None:
    """The command a normalised message text invokes, with its arguments: today the registry's
    keywords (``registry.match``). The one place an intent resolver replaces (issue 13)."""
    return registry.match(text)


def classify(event: Event, services: Services) -> Classified:
    text, command, args, card = "", None, "", None
    to_bot = event.addressed_to_bot
    if to_bot:
        text = normalize(event.text)
        found = resolve_command(text, event, services)
        if found is not None:
            command, args = found
        anonymous = command is not None and command.anonymous
    elif event.kind == "card_click":
        card = str(event.data.get("card_kind", ""))
        anonymous = card in ANONYMOUS_CARDS
    else:
        anonymous = False
    key = event.dedupe_key
    if key and (card is not None or anonymous):
        key = _hashed_key(key, services)
    return Classified(event, text, command, args, anonymous, key, to_bot, card)


def stored_key(event: Event, services: Services) -> str | None:
    """The event's dedupe key as stored in ``processed_events`` (``classify(event).key``).

    A card click's key is built from the sender and the time (WeCom: ``FromUserName +
    CreateTime``), and its row is written in the same transaction as the anonymous answer (on
    PostgreSQL they share ``xmin``). For card clicks and anonymous commands the key is therefore
    stored as a keyed hash (``pseudonym_secret``, like the answers' own pseudonyms): still
    deterministic, so a retry is recognised, but it names nobody. ``handle_event`` stores the key
    of an anonymous event salted with its day's salt instead (``storage.feedback.anonymous_dedupe_key``),
    which needs the database: the key planned here for an anonymous event is never stored."""
    return classify(event, services).key


def _hashed_key(key: str, services: Services) -> str:
    digest = hmac.new(services.settings.pseudonym_secret, b"dedupe|" + key.encode(), hashlib.sha256)
    return "anon:" + digest.hexdigest()
