"""From a neutral event to replies: dedupe, record activity, run the matching command."""
from __future__ import annotations

import hashlib
import hmac
import logging

from sqlalchemy.orm import Session

import handlers.commands  # noqa: F401  (registers every command)
from governance.ritual import is_ritual
from handlers import registry
from handlers.context import Context, Services
from handlers.events import Event, Reply
from storage import repo
from storage.models import Conversation, Group, Person

log = logging.getLogger("qunzhi.handlers")

HINT = "没听懂。可以说“帮助”看看我能做什么，例如“报备”“我的群”。"


def handle_event(session: Session, event: Event, services: Services) -> list[Reply]:
    """Process one event exactly once (in the caller's transaction) and return the replies."""
    key = _stored_key(event, services)
    if key and not repo.mark_processed(session, key, event.at):
        log.info("duplicate event %s ignored", key)
        return []
    if _is_anonymous(event):
        # Creating the person here would write a row naming the voter in the answer's transaction.
        person = session.get(Person, event.sender_id) or Person(id=event.sender_id, role="cadre", created_at=event.at)
    else:
        person = repo.get_or_create_person(session, event.sender_id, event.at)
    if event.group_id and not _is_anonymous(event):
        _record_group_activity(session, event, services)
    if event.kind == "message" and event.addressed_to_bot:
        return _run_command(session, event, person, services)
    if event.kind == "card_click":
        return _run_card(session, event, person, services)
    return []


def _stored_key(event: Event, services: Services) -> str | None:
    """The dedupe key as stored in ``processed_events``.

    A card click's key is built from the sender and the time (WeCom: ``FromUserName +
    CreateTime``), and its row is written in the same transaction as the anonymous answer (on
    PostgreSQL they share ``xmin``). For card clicks and anonymous commands the key is therefore
    stored as a keyed hash (``pseudonym_secret``, like the answers' own pseudonyms): still
    deterministic, so a retry is recognised, but it names nobody."""
    key = event.dedupe_key
    if key and (event.kind == "card_click" or _is_anonymous(event)):
        digest = hmac.new(services.settings.pseudonym_secret, b"dedupe|" + key.encode(), hashlib.sha256)
        return "anon:" + digest.hexdigest()
    return key


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
            session, dedupe_key=event.dedupe_key or f"{event.platform}:{event.sender_id}:{event.at.timestamp()}",
            platform=event.platform, group_id=g.id, sender_id=event.sender_id, sent_at=event.at,
            is_ritual=is_ritual(text), text=text if services.settings.store_message_text else None)
    elif event.kind == "dissolve_confirmed":
        from storage.lifecycle import confirm_bridge_dissolution

        if not confirm_bridge_dissolution(session, g.id, event.at, services.settings):
            log.warning("bridge confirmed dissolving %s, but no dissolution was waiting", g.id)


ANONYMOUS_CARDS = ("pulse", "useless")


def _is_anonymous(event: Event) -> bool:
    """An anonymous command (这个群没用, 反映, a pulse answer) or a click on an anonymous card must
    leave no trace of who said it."""
    if event.kind == "card_click":
        return str(event.data.get("card_kind", "")) in ANONYMOUS_CARDS
    if not (event.kind == "message" and event.addressed_to_bot):
        return False
    from handlers.text import normalize

    found = registry.match(normalize(event.text))
    return found is not None and found[0].anonymous


def _as_list(result) -> list[Reply]:
    if result is None:
        return []
    if isinstance(result, Reply):
        return [result]
    return list(result)


def _run_command(session: Session, event: Event, person, services: Services) -> list[Reply]:
    from handlers.text import normalize

    text = normalize(event.text)
    ctx = Context(session=session, event=event, person=person, services=services, text=text)
    found = registry.match(text)
    conv = session.get(Conversation, person.id)
    if found is None and conv is not None:
        cont = registry.continuation(conv.intent)
        if cont is not None:
            return _as_list(cont(ctx, conv))
    if found is None:
        return [Reply(HINT)] if text else []
    cmd, args = found
    if conv is not None and text not in ("取消",):
        session.delete(conv)  # a new command ends an unfinished dialogue
    return _as_list(cmd.callback(ctx, args))


def _run_card(session: Session, event: Event, person, services: Services) -> list[Reply]:
    cb = registry.continuation("card:" + str(event.data.get("card_kind", "")))
    if cb is None:
        log.warning("card click with no handler: %s", event.data)
        return []
    ctx = Context(session=session, event=event, person=person, services=services, text="")
    return _as_list(cb(ctx, None))


def group_label(g: Group) -> str:
    return f"“{g.name}”"
