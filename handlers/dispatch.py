"""From a neutral event to replies: classify it once (``handlers.classify``), dedupe, record activity,
run the command it invokes."""
from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from dataclasses import dataclass

from sqlalchemy.orm import Session

import handlers.commands  # noqa: F401  (registers every command)
from governance.ritual import is_ritual
from handlers import dialogue, registry
from handlers.dialogue import CONVERSATION_TTL, as_list as _as_list  # noqa: F401  (the TTL: tests, jobs)
from handlers.classify import Classified, classify, stored_key  # noqa: F401  (stored_key: the runtime's)
from handlers.context import Context, Services
from governance.events import Event, Reply
from storage import identity, ingest, repo
from storage.models import Conversation, Group, Person

log = logging.getLogger("qunzhi.handlers")

HINT = "没听懂。可以说“帮助”看看我能做什么，例如“报备”“我的群”。"


def handle_event(session: Session, event: Event, services: Services,
                 classified: Classified | None = None) -> list[Reply]:
    """Process one event exactly once (in the caller's transaction) and return the replies.

    ``classified``: the event's classification if the caller already made it (the writer's plan);
    everything below reads it, nothing classifies the event again.

    A repeat (the platform resending a request, possibly byte for byte) changes nothing and gets
    the replies the first attempt answered with (``repeat_replies``), so the platform shows the
    same answer whichever attempt's response reaches it."""
    c = classified if classified is not None else classify(event, services)
    if c.anonymous and event.dedupe_key:
        # Salted with the day's salt (destroyed when the day's window closes), stored with the day only.
        from storage.feedback import anonymous_dedupe_key, day_start

        key = anonymous_dedupe_key(session, services.settings.pseudonym_secret, event.dedupe_key, event.at)
        at = day_start(event.at)
    else:
        key, at = c.key, event.at
    if key and not repo.mark_processed(session, key, at):
        log.info("duplicate event %s: nothing stored, answered as the first time", key)
        return repeat_replies(session, {key: c}, services)[key]
    replies = _handle_new(session, c, services)
    if key and replies != deterministic_replies(c):
        repo.remember_reply(session, key, [reply_payload(r) for r in replies])
    return replies


def reply_payload(r: Reply) -> dict:
    return {"text": r.text, "card": r.card, "markdown": r.markdown}


def stored_reply(payloads: list[dict]) -> list[Reply]:
    """The replies ``reply_payload`` stored."""
    return [Reply(text=r.get("text") or "", card=r.get("card"), markdown=bool(r.get("markdown"))) for r in payloads]


def planned_replies(p: "Planned") -> list[Reply]:
    """``deterministic_replies`` of a planned event."""
    return [Reply(HINT)] if p.hint and wants_hint(p.text) else []


def deterministic_replies(c: Classified) -> list[Reply]:
    """The replies that follow from the event alone (what the bulk paths answer): the hint for a
    message to the bot that matches no command, unless it is a ritual acknowledgement."""
    return [Reply(HINT)] if c.hint and wants_hint(c.text) else []


def repeat_replies(session: Session, events: dict[str, Classified], services: Services) -> dict[str, list[Reply]]:
    """For repeats of stored events (by stored dedupe key): the replies the first attempt gave.
    One query for all of them; a key without a stored reply gets the deterministic one."""
    stored = repo.stored_replies(session, list(events))
    return {k: stored_reply(stored[k]) if stored.get(k) is not None else deterministic_replies(c)
            for k, c in events.items()}


def _handle_new(session: Session, c: Classified, services: Services) -> list[Reply]:
    # a linked account speaks as its person (storage.identity), on this path as on the bulk ones
    resolved = identity.resolve_batch(session, [c.event])
    if resolved.events[0] is not c.event:
        c = dataclasses.replace(c, event=resolved.events[0])
    event = c.event
    if event.group_id and not _may_touch_group(session, event):
        return []  # claimed (a retry changes nothing), but never applied
    if c.anonymous:
        # Creating the person here would write a row naming the voter in the answer's transaction
        # (and so would recording the account).
        person = session.get(Person, event.sender_id) or Person(id=event.sender_id, role="cadre", created_at=event.at)
    else:
        person = repo.get_or_create_person(session, event.sender_id, event.at)
        identity.record_accounts(session, resolved.unrecorded)
    if c.records_activity:
        _record_group_activity(session, event, services)
    if c.to_bot:
        return _run_command(session, c, person, services)
    if c.card is not None:
        return _run_card(session, c, person, services)
    return []


def _may_touch_group(session: Session, event: Event) -> bool:
    """The guard where a group row is used: an event never changes another platform's group
    (``storage.repo.may_touch``; bridge ids are scoped by platform, so this is the second line)."""
    g = session.get(Group, event.group_id)
    if g is None or repo.may_touch(g.platform, event.platform):
        return True
    log.warning("event %s from platform %r names group %s of platform %r: not applied", event.dedupe_key,
                event.platform, event.group_id, g.platform)
    return False


def _record_group_activity(session: Session, event: Event, services: Services) -> None:
    if event.kind in ingest.PLAIN_KINDS:  # the rows every ingest path stores (storage.ingest.rows)
        ingest.record(session, event, store_text=services.settings.store_message_text)
        return
    g = repo.ensure_group(session, group_id=event.group_id, platform=event.platform, at=event.at,
                          name=event.group_name, source="activity")
    if event.kind == "group_renamed" and event.group_name:
        g.name = event.group_name
    elif event.kind == "member_left":
        repo.remove_members(session, g.id, event.member_ids or (event.sender_id,))
    elif event.kind == "dissolve_confirmed" and event.data.get("platform_disbanded"):
        # the platform reports the group gone (Feishu im.chat.disbanded_v1: our purge, or a person)
        log.info("group %s (%s) was disbanded on the platform (status %s)", g.id, event.platform, g.status)
    elif event.kind == "dissolve_confirmed":
        from storage.lifecycle import confirm_bridge_dissolution

        if not confirm_bridge_dissolution(session, g.id, event.at, services.settings,
                                          instruction_id=event.data.get("instruction_id")):
            log.warning("bridge confirmed dissolving %s, but no dissolution was waiting", g.id)


def _is_anonymous(event: Event, services: Services) -> bool:
    """An anonymous command (这个群没用, 反映, a pulse answer) or a click on an anonymous card must
    leave no trace of who said it: what the one classification says (``handlers.classify``)."""
    return classify(event, services).anonymous


def _run_command(session: Session, c: Classified, person, services: Services) -> list[Reply]:
    event, text, cmd = c.event, c.text, c.command
    ctx = Context(session=session, event=event, person=person, services=services, text=text, parse=c.parse,
                  slots=dict(c.parse.slots) if c.parse is not None else {})
    if cmd is not None and c.anonymous:
        # An anonymous command changes nothing else about its sender: ending (or expiring) their
        # dialogue in the same transaction as the answer would link the two.
        return _as_list(cmd.run(ctx, c.args))
    conv = dialogue.open_conversation(session, person.id, event.at)
    if conv is not None and dialogue.takes(ctx, conv, c.parse):
        return dialogue.changing_groups(ctx, lambda: dialogue.answer(ctx, conv))
    if cmd is None:
        return [Reply(HINT)] if wants_hint(text) else []
    before = (conv.intent, dict(conv.data or {}), conv.updated_at) if conv is not None else None
    replies = dialogue.changing_groups(ctx, lambda: cmd.run(ctx, c.args))
    if before is not None:
        still = session.get(Conversation, person.id)
        if still is not None and (still.intent, dict(still.data or {}), still.updated_at) == before and replies:
            # an unrelated command while a dialogue is open: answered, and the dialogue kept
            last = replies[-1]
            replies[-1] = dataclasses.replace(last, text=last.text + "\n" + dialogue.reminder(still))
    return replies


def _changing_groups(ctx: Context, run) -> list[Reply]:
    return dialogue.changing_groups(ctx, run)


def wants_hint(text: str) -> bool:
    """Whether an unrecognised message to the bot gets the hint. A ritual acknowledgement
    (收到, 好的, 👍 …) gets nothing: answering an ack with 没听懂 is noise for everyone in the
    group, the very formalism the bot is here to cut."""
    return bool(text) and not is_ritual(text)


def _run_card(session: Session, c: Classified, person, services: Services) -> list[Reply]:
    event = c.event
    cb = registry.continuation("card:" + c.card)
    if cb is None:
        log.warning("card click with no handler: %s", event.data)
        return []
    ctx = Context(session=session, event=event, person=person, services=services, text="")
    return _changing_groups(ctx, lambda: cb(ctx, None))


def group_label(g: Group) -> str:
    return f"“{g.name}”"


# --- the plan of an event for the group-commit writer -------------------------------------------
# Plain activity is stored many events at a time (``handlers.ingest.store_plain``, through
# ``storage.ingest.store``). Only events whose outcome needs no command handler qualify: activity
# kinds, and messages to the bot that match no command (answered with the hint) from a sender who
# is not in a dialogue. Everything else keeps the per-event path; anonymous events their own transaction.

BULK_KINDS = ingest.PLAIN_KINDS


@dataclass(slots=True)
class Planned:
    """The pure (database-free) part of handling one event, done before any SQL."""

    event: Event
    key: str | None      # the dedupe key as stored in processed_events
    anonymous: bool      # must be handled alone, in its own transaction
    bulk: bool           # may go through ``handlers.ingest.store_plain``
    hint: bool           # a message to the bot matching no command: the hint (unless in a dialogue or
                         # a ritual ack, see wants_hint); its sender's dialogue state matters
    text: str            # normalised text of a message to the bot
    classified: Classified  # what the event is (``handle_event`` takes it rather than classify again)


def plan(event: Event, services: Services) -> Planned:
    c = classify(event, services)
    bulk = c.plain and event.kind in BULK_KINDS
    return Planned(event, c.key, c.anonymous, bulk, bulk and c.to_bot, c.text, c)
