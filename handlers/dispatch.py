"""From a neutral event to replies: classify it once (``handlers.classify``), dedupe, record activity,
run the command it invokes."""
from __future__ import annotations

import logging
from datetime import timedelta
from dataclasses import dataclass

from sqlalchemy.orm import Session

import handlers.commands  # noqa: F401  (registers every command)
from governance.ritual import is_ritual
from handlers import registry
from handlers.classify import Classified, classify, stored_key  # noqa: F401  (stored_key: the runtime's)
from handlers.context import Context, Services
from governance.events import Event, Reply
from storage import repo
from storage.models import Conversation, Group, Person, ProcessedEvent

log = logging.getLogger("qunzhi.handlers")

CONVERSATION_TTL = timedelta(hours=12)
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


def deterministic_replies(c: Classified) -> list[Reply]:
    """The replies that follow from the event alone (what the bulk paths answer): the hint for a
    message to the bot that matches no command, unless it is a ritual acknowledgement."""
    return [Reply(HINT)] if c.hint and wants_hint(c.text) else []


def repeat_replies(session: Session, events: dict[str, Classified], services: Services) -> dict[str, list[Reply]]:
    """For repeats of stored events (by stored dedupe key): the replies the first attempt gave.
    One query for all of them; a key without a stored reply gets the deterministic one."""
    stored = repo.stored_replies(session, list(events))
    return {k: ([Reply(text=r.get("text") or "", card=r.get("card"), markdown=bool(r.get("markdown")))
                 for r in stored[k]] if stored.get(k) is not None else deterministic_replies(c))
            for k, c in events.items()}


def _handle_new(session: Session, c: Classified, services: Services) -> list[Reply]:
    event = c.event
    if event.group_id and not _may_touch_group(session, event):
        return []  # claimed (a retry changes nothing), but never applied
    if c.anonymous:
        # Creating the person here would write a row naming the voter in the answer's transaction.
        person = session.get(Person, event.sender_id) or Person(id=event.sender_id, role="cadre", created_at=event.at)
    else:
        person = repo.get_or_create_person(session, event.sender_id, event.at)
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
    g = repo.ensure_group(session, group_id=event.group_id, platform=event.platform, at=event.at,
                          name=event.group_name, source="activity")
    if event.kind == "group_renamed" and event.group_name:
        g.name = event.group_name
    if event.kind in ("member_joined", "group_created", "enter_chat") and (event.member_ids or event.kind != "enter_chat"):
        repo.add_members(session, g.id, event.member_ids or (event.sender_id,), event.at)
    elif event.kind == "member_left":
        repo.remove_members(session, g.id, event.member_ids or (event.sender_id,))
    elif event.kind == "message":
        repo.add_members(session, g.id, (event.sender_id,), event.at)
        text = event.text or ""
        repo.record_message(
            session, dedupe_key=message_key(event),
            platform=event.platform, group_id=g.id, sender_id=event.sender_id, sent_at=event.at,
            is_ritual=is_ritual(text), text=text if services.settings.store_message_text else None)
    elif event.kind == "dissolve_confirmed":
        from storage.lifecycle import confirm_bridge_dissolution

        if not confirm_bridge_dissolution(session, g.id, event.at, services.settings,
                                          instruction_id=event.data.get("instruction_id")):
            log.warning("bridge confirmed dissolving %s, but no dissolution was waiting", g.id)


def _as_list(result) -> list[Reply]:
    if result is None:
        return []
    if isinstance(result, Reply):
        return [result]
    return list(result)


def _run_command(session: Session, c: Classified, person, services: Services) -> list[Reply]:
    event, text, cmd = c.event, c.text, c.command
    ctx = Context(session=session, event=event, person=person, services=services, text=text)
    if cmd is not None and c.anonymous:
        # An anonymous command changes nothing else about its sender: ending (or expiring) their
        # dialogue in the same transaction as the answer would link the two.
        return _as_list(cmd.run(ctx, c.args))
    conv = session.get(Conversation, person.id)
    if conv is not None and conv.updated_at < event.at - CONVERSATION_TTL:
        session.delete(conv)  # an abandoned dialogue must not swallow tomorrow's 好的 as an answer
        conv = None
    if cmd is None and conv is not None:
        cont = registry.continuation(conv.intent)
        if cont is not None:
            return _changing_groups(ctx, lambda: cont(ctx, conv))
    if cmd is None:
        return [Reply(HINT)] if wants_hint(text) else []
    if conv is not None and text not in ("取消",):
        session.delete(conv)  # a new command ends an unfinished dialogue
    return _changing_groups(ctx, lambda: cmd.run(ctx, c.args))


def _changing_groups(ctx: Context, run) -> list[Reply]:
    """Run a command; then, for the groups it changed, withdraw or correct notices whose premise
    ended and refresh those groups' per-group findings (``storage.lifecycle.groups_changed``)."""
    from storage.lifecycle import groups_changed

    with repo.track_groups(ctx.session) as touched:
        replies = _as_list(run())
    if touched:
        groups_changed(ctx.session, touched, ctx.now, ctx.settings, actor=ctx.person.id)
    return replies


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


# --- bulk ingest (the group-commit writer) -----------------------------------------------------
# What ``handle_event`` does for plain activity, done for many events in a handful of multi-row
# statements. Only events whose outcome needs no command handler qualify: activity kinds, and
# messages to the bot that match no command (answered with the hint) from a sender who is not in
# a dialogue. Everything else keeps the per-event path; anonymous events their own transaction.

BULK_KINDS = ("message", "member_joined", "group_created", "enter_chat")


@dataclass(slots=True)
class Planned:
    """The pure (database-free) part of handling one event, done before any SQL."""

    event: Event
    key: str | None      # the dedupe key as stored in processed_events
    anonymous: bool      # must be handled alone, in its own transaction
    bulk: bool           # may go through ``handle_bulk``
    hint: bool           # a message to the bot matching no command: the hint (unless in a dialogue or
                         # a ritual ack, see wants_hint); its sender's dialogue state matters
    text: str            # normalised text of a message to the bot
    classified: Classified  # what the event is (``handle_event`` takes it rather than classify again)


def plan(event: Event, services: Services) -> Planned:
    c = classify(event, services)
    bulk = c.plain and event.kind in BULK_KINDS
    return Planned(event, c.key, c.anonymous, bulk, bulk and c.to_bot, c.text, c)


def bulk_prefix(session: Session, plans: list[Planned]) -> int:
    """How many of the leading ``plans`` (all ``bulk``) ``handle_bulk`` may take: up to the first
    hint-message whose sender is in a dialogue (that text is the dialogue's next answer)."""
    senders = {p.event.sender_id for p in plans if p.hint}
    if senders:
        talking = repo.in_dialogue(session, sorted(senders))
        for i, p in enumerate(plans):
            if p.hint and p.event.sender_id in talking:
                return i
    return len(plans)


def bulk_claim(session: Session, plans: list[Planned]) -> tuple[int, set[str]]:
    """``bulk_prefix`` and the dedupe claims of the events it lets through, in one step (on
    PostgreSQL one statement): how many of the leading ``plans`` ``handle_bulk`` may take, and
    which of their keys were new. Only an event's first occurrence in the batch claims its key."""
    firsts: list[str | None] = []
    seen: set[str] = set()
    for p in plans:
        k = p.key[:200] if p.key else None
        firsts.append(k if k is not None and k not in seen else None)
        if k is not None:
            seen.add(k)
    if session.get_bind().dialect.name == "postgresql":
        return repo.claim_until_dialogue(session, [
            {"pos": i, "key": k, "at": p.event.at, "sender": p.event.sender_id, "hint": p.hint}
            for i, (p, k) in enumerate(zip(plans, firsts))])
    n = bulk_prefix(session, plans)
    claims = sorted({k: p.event.at for p, k in zip(plans[:n], firsts[:n]) if k is not None}.items())
    return n, {k for (k,) in repo.insert_ignore_returning(
        session, ProcessedEvent, [{"key": k, "at": at} for k, at in claims], ["key"])}


def message_key(event: Event) -> str:
    """The ``messages.dedupe_key`` of a group message (the event's own key, else sender and time)."""
    return event.dedupe_key or f"{event.platform}:{event.sender_id}:{event.at.timestamp()}"


def _message_row(e: Event, sent_at, store_text: bool) -> dict:
    """A group message's ``messages`` row as the bulk paths insert it (``sent_at`` as they pass times)."""
    text = e.text or ""
    return {"dedupe_key": message_key(e)[:200], "platform": e.platform, "group_id": e.group_id,
            "sender_id": e.sender_id, "sent_at": sent_at, "is_ritual": is_ritual(text),
            "text": text if store_text else None}


def _member_ids(event: Event) -> tuple[str, ...]:
    """Who ``_record_group_activity`` adds to the group's members for this event."""
    if event.kind == "message":
        return (event.sender_id,)
    if event.kind in ("member_joined", "group_created", "enter_chat") and (event.member_ids or event.kind != "enter_chat"):
        return tuple(dict.fromkeys(event.member_ids or (event.sender_id,)))
    return ()


def handle_bulk(session: Session, plans: list[Planned], services: Services,
                new_keys: set[str] | None = None) -> list[list[Reply]]:
    """``handle_event`` for each of ``plans`` (all ``bulk``, in order), with the same end state:
    each dedupe key claimed once (the first event carrying it wins, later ones are duplicates),
    persons, groups, memberships and messages inserted if absent, and one counter update per
    touched group. ``new_keys``: the keys ``bulk_claim`` already claimed for these plans (None:
    claim them here). Raises on a database error (the caller rolls back, goes event by event)."""
    if new_keys is None:
        claim: dict[str, object] = {}
        for p in plans:
            if p.key:
                claim.setdefault(p.key[:200], p.event.at)
        new_keys = {k for (k,) in repo.insert_ignore_returning(
            session, ProcessedEvent, [{"key": k, "at": at} for k, at in sorted(claim.items())], ["key"])}
    else:
        new_keys = set(new_keys)
    fresh: list[Planned] = []
    at_index: list[int] = []
    out: list[list[Reply]] = []
    repeats: dict[int, str] = {}
    for i, p in enumerate(plans):
        k = p.key[:200] if p.key else None
        if k is not None and k not in new_keys:
            log.info("duplicate event %s: nothing stored, answered as the first time", k)
            repeats[i] = k
            out.append([])
            continue
        if k is not None:
            new_keys.discard(k)  # a second event with the same key in this batch is a duplicate
        fresh.append(p)
        at_index.append(i)
        out.append([Reply(HINT)] if p.hint and wants_hint(p.text) else [])
    # The guard where a group row is used (``_may_touch_group``), for the batch in one query: the
    # stored groups' platforms, else the platform of the batch's first event naming the group.
    owner = repo.group_platforms(session, {p.event.group_id for p in fresh if p.event.group_id})
    allowed: list[Planned] = []
    for i, p in zip(at_index, fresh):
        e = p.event
        if e.group_id and not repo.may_touch(owner.setdefault(e.group_id, e.platform), e.platform):
            log.warning("event %s from platform %r names group %s of platform %r: not applied", e.dedupe_key,
                        e.platform, e.group_id, owner[e.group_id])
            out[i] = []
            continue
        allowed.append(p)
    fresh = allowed
    persons: dict[str, dict] = {}
    groups: dict[str, dict] = {}
    members: dict[tuple[str, str], dict] = {}
    messages: list[dict] = []
    store_text = services.settings.store_message_text
    for p in fresh:
        e = p.event
        persons.setdefault(e.sender_id, {"id": e.sender_id, "name": None, "role": "cadre", "created_at": e.at})
        if not e.group_id:
            continue
        groups.setdefault(e.group_id, repo.new_group_row(group_id=e.group_id, platform=e.platform, at=e.at,
                                                         name=e.group_name, source="activity"))
        for pid in _member_ids(e):
            members.setdefault((e.group_id, pid), {"group_id": e.group_id, "person_id": pid, "joined_at": e.at})
        if e.kind == "message":
            messages.append(_message_row(e, e.at, store_text))
    repo.record_activity_bulk(session, persons=[persons[k] for k in sorted(persons)],
                              groups=[groups[k] for k in sorted(groups)],
                              members=[members[k] for k in sorted(members)], messages=messages)
    if repeats:  # retries are rare: one query for the batch, only when there are some
        again = repeat_replies(session, {k: plans[i].classified for i, k in repeats.items()}, services)
        for i, k in repeats.items():
            out[i] = again[k]
    return out


def ingest_autocommit(conn, plans: list[Planned], services: Services) -> tuple[int, list[list[Reply]]] | None:
    """PostgreSQL: ``bulk_claim`` + ``handle_bulk`` for ``plans`` (all ``bulk``) as one statement on
    the autocommit connection ``conn`` (``storage.repo.pg_ingest``), committed when it returns.
    Returns how many leading plans it took (up to the first hint-message from a sender in a
    dialogue) and their replies; None if the statement cannot be used (nothing was written).
    Raises on a database error (nothing was written: it is one statement)."""
    events, persons, members, messages, groups = [], [], [], [], []
    seen_keys: set[str] = set()
    seen_messages: set[str] = set()
    store_text = services.settings.store_message_text
    firsts: list[str | None] = []
    for pos, p in enumerate(plans):
        e = p.event
        at = repo.pg_json_time(e.at)  # once per event: it is in most of the event's rows
        k = p.key[:200] if p.key else None
        dup = k is not None and k in seen_keys
        if k is not None:
            seen_keys.add(k)
        firsts.append(None if dup else k)
        events.append({"pos": pos, "key": None if dup else k, "dup": dup, "at": at, "sender": e.sender_id,
                       "hint": p.hint})
        persons.append({"pos": pos, "id": e.sender_id, "name": None, "role": "cadre", "created_at": at})
        if not e.group_id:
            continue
        groups.append({"pos": pos, **repo.new_group_row(group_id=e.group_id, platform=e.platform, at=at,
                                                        name=e.group_name, source="activity")})
        members.extend({"pos": pos, "group_id": e.group_id, "person_id": pid, "joined_at": at}
                       for pid in _member_ids(e))
        if e.kind == "message":
            row = _message_row(e, at, store_text)
            if row["dedupe_key"] in seen_messages:  # only the first can be stored; a later one is a duplicate
                continue
            seen_messages.add(row["dedupe_key"])
            messages.append({"pos": pos, **row})
    foreign: set[int] = set()
    found = repo.pg_ingest(conn, events, persons, members, messages, groups, foreign)
    if found is None:
        return None
    cut, claimed = found
    out: list[list[Reply]] = []
    before: dict[int, str] = {}  # repeats of events stored by an earlier statement
    for i, (p, k) in enumerate(zip(plans[:cut], firsts[:cut])):
        if p.key and k not in claimed:  # claimed before, or a repeat within this batch
            log.info("duplicate event %s: nothing stored, answered as the first time", p.key[:200])
            if k is not None:
                before[i] = k
        if i in foreign:
            log.warning("event %s from platform %r names group %s of another platform: not applied",
                        p.event.dedupe_key, p.event.platform, p.event.group_id)
            out.append([])
            continue
        out.append([Reply(HINT)] if p.hint and wants_hint(p.text) else [])  # what the event determines
    if before:  # a repeat answers what its first attempt answered, if that was stored (rare: one query)
        stored = repo.pg_stored_replies(conn, list(before.values()))
        for i, k in before.items():
            if stored.get(k) is not None:
                out[i] = [Reply(text=r.get("text") or "", card=r.get("card"), markdown=bool(r.get("markdown")))
                          for r in stored[k]]
    return cut, out
