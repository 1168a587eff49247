"""What an event is, decided once, from the event alone (no database): :func:`classify`.

Dispatch (``handlers.dispatch.handle_event``), the dedupe key the runtime remembers replies under
(``stored_key``) and the group-commit writer's plan (``handlers.dispatch.plan``) all read the same
:class:`Classified`; nothing downstream matches the text again.

Where a text becomes a command is one function, :func:`resolve_command`: the intent parser
(``nlu.parse``, issue 13) mapped to the registered commands by their declared ``intent``. The
anonymity of the result, the stored key, the hint and the writer's bulk decision follow from it;
the command gets the parse (its slots), never the text to split again.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
import hmac
from dataclasses import dataclass

from governance.events import Event
from handlers import registry
from handlers.context import Services
from handlers.registry import Command
from handlers.text import normalize
import nlu

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
    parse: "nlu.Parse | None" = None  # what the parser understood (a dialogue's answer may have none)

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


def intent_of(p: nlu.Parse) -> str:
    """The registered command's intent for a parse: a bare 1–3 is the pulse's (its command hands
    it to a pending numbered choice first, see ``handlers.commands.feedback``), 确认保护 <群> is
    the administrators' confirmation of a protection request."""
    if p.intent == "choose" and 1 <= p.slots.get("number", 0) <= 3:
        return "pulse"
    if p.intent == "confirm" and p.group and p.verb.startswith("确认保护"):
        return "confirm_protect"
    return p.intent


@lru_cache(maxsize=1)
def _help_words() -> frozenset[str]:
    from nlu.intents import BY_NAME

    h = BY_NAME["help"]
    return frozenset(w.lower() for w in (h.verbs + " " + h.alone).split())


def _help_topic(text: str, today, services: Services) -> nlu.Parse | None:
    """``帮助 续期``: the help verb first, a command after it (which would otherwise win)."""
    head, _, tail = text.partition(" ")
    if not tail or head.lower() not in _help_words():
        return None
    return nlu.Parse("help", {"topic": tail.strip()}, text, verb=head, rest=tail.strip())


def resolve_command(text: str, event: Event, services: Services) -> tuple[Command, str, nlu.Parse] | None:
    """The command a message invokes, its arguments (what no slot consumed) and the parse: the
    one place a text becomes a command. ``None``: no command (收到, 好的, work text, or an intent
    whose command is not registered here, such as 建群 without a ``create`` command)."""
    at = event.at or services.now()
    today = at.astimezone(services.settings.tz).date()
    p = nlu.parse(event.text or "", today=today)
    if p is None:
        return None
    if p.intent != "help" and " " in text:
        p = _help_topic(text, today, services) or p
    cmd = registry.by_intent(intent_of(p))
    if cmd is None:
        return None
    return cmd, p.rest, p


def classify(event: Event, services: Services) -> Classified:
    text, command, args, card, parse = "", None, "", None, None
    to_bot = event.addressed_to_bot
    if to_bot:
        text = normalize(event.text)
        found = resolve_command(text, event, services)
        if found is not None:
            command, args, parse = found
        anonymous = command is not None and command.anonymous
    elif event.kind == "card_click":
        card = str(event.data.get("card_kind", ""))
        anonymous = card in ANONYMOUS_CARDS
    else:
        anonymous = False
    key = event.dedupe_key
    if key and (card is not None or anonymous):
        key = _hashed_key(key, services)
    return Classified(event, text, command, args, anonymous, key, to_bot, card, parse)


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
