"""The rows one plain event produces: the one definition every ingest path (one event, a batch in
a session, PostgreSQL's one statement) inserts.

A plain event (``PLAIN_KINDS``: a group message, a join, a group's creation, a chat entered)
makes its sender a person, its group a group (first seen now, from activity), the people it
names members of that group, and, for a group message, a ``messages`` row. Rows are inserted if
absent; the group's counters follow from the messages that were new (``storage.ingest.counters``).
"""
from __future__ import annotations

from dataclasses import dataclass

from governance.events import Event
from governance.ritual import is_ritual
from storage.repo import new_group_row

PLAIN_KINDS = ("message", "member_joined", "group_created", "enter_chat")
KEY_MAX = 200  # processed_events.key and messages.dedupe_key


@dataclass(slots=True)
class EventRows:
    person: dict
    group: dict | None
    members: tuple[dict, ...]
    message: dict | None


def message_key(event: Event) -> str:
    """The ``messages.dedupe_key`` of a group message (the event's own key, else sender and time)."""
    return event.dedupe_key or f"{event.platform}:{event.sender_id}:{event.at.timestamp()}"


def member_ids(event: Event) -> tuple[str, ...]:
    """Who the event makes members of its group: a message's sender; the people a join or a
    creation names (else its sender); those an entered chat names."""
    if event.kind == "message":
        return (event.sender_id,)
    if event.kind in ("member_joined", "group_created", "enter_chat") and (
            event.member_ids or event.kind != "enter_chat"):
        return tuple(dict.fromkeys(event.member_ids or (event.sender_id,)))
    return ()


def rows_of(event: Event, *, store_text: bool, at=None, pos: int | None = None) -> EventRows:
    """The rows of a plain event. ``at``: the value its time columns get (default ``event.at``;
    PostgreSQL's one statement passes the time as its JSON parameters carry it); ``pos``: the
    event's position in a batch, carried by every row (the one statement joins on it)."""
    at = event.at if at is None else at
    tag = {} if pos is None else {"pos": pos}
    person = {**tag, "id": event.sender_id, "name": None, "role": "cadre", "created_at": at}
    gid = event.group_id
    if not gid:
        return EventRows(person, None, (), None)
    group = {**tag, **new_group_row(group_id=gid, platform=event.platform, at=at, name=event.group_name,
                                    source="activity")}
    members = tuple({**tag, "group_id": gid, "person_id": pid, "joined_at": at} for pid in member_ids(event))
    message = None
    if event.kind == "message":
        text = event.text or ""
        message = {**tag, "dedupe_key": message_key(event)[:KEY_MAX], "platform": event.platform, "group_id": gid,
                   "sender_id": event.sender_id, "sent_at": at, "is_ritual": is_ritual(text),
                   "text": text if store_text else None}
    return EventRows(person, group, members, message)
