"""Command registry: a handler is a match rule plus a callback, registered with ``@command``.

Adding a command is adding one file under ``handlers/commands/`` (imported by its package).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from governance.events import Reply

HandlerResult = Reply | list[Reply] | None
Callback = Callable[..., HandlerResult]


@dataclass(frozen=True)
class Command:
    keywords: tuple[str, ...]
    callback: Callback
    summary: str
    in_group: bool = True  # may be used by @-mentioning the bot in a group
    anonymous: bool = False  # the message is never recorded with its sender (feedback, reports)


_COMMANDS: list[Command] = []
_CONVERSATIONS: dict[str, Callback] = {}


def command(*keywords: str, summary: str = "", in_group: bool = True, anonymous: bool = False):
    def deco(fn: Callback) -> Callback:
        _COMMANDS.append(Command(tuple(keywords), fn, summary, in_group, anonymous))
        # longest keyword first so 这个群没用 wins over shorter prefixes
        _COMMANDS.sort(key=lambda c: -max(len(k) for k in c.keywords))
        return fn

    return deco


def conversation(intent: str):
    """Register the continuation of a multi-turn dialogue (state kept in the database)."""

    def deco(fn: Callback) -> Callback:
        _CONVERSATIONS[intent] = fn
        return fn

    return deco


def match(text: str) -> tuple[Command, str] | None:
    """Find the command a normalised text starts with; return it with the rest as arguments."""
    for cmd in _COMMANDS:
        for kw in cmd.keywords:
            if text == kw:
                return cmd, ""
            if text.startswith(kw):
                rest = text[len(kw):]
                if rest[:1] in (" ", ":") or len(kw) >= 2:
                    return cmd, rest.lstrip(" :")
    return None


def commands() -> list[Command]:
    return list(_COMMANDS)


def continuation(intent: str) -> Callback | None:
    return _CONVERSATIONS.get(intent)
