"""Command registry: a handler is a match rule plus a callback, registered with ``@command``.

Adding a command is adding one file under ``handlers/commands/`` (imported by its package). What a
command needs is declared on it and enforced by :meth:`Command.run`, never repeated in its body:

* ``permission`` (:mod:`handlers.permissions`): who may use it, checked against the group it names;
* ``target``: how its arguments name the group(s) it acts on (``handlers.groups.named_group`` …);
  the callback then gets ``(ctx, *groups, rest)`` instead of ``(ctx, args)``;
* ``in_group``: whether it may be said in a group (False: only in a direct chat, answered with
  ``private_reply`` in a group, silence if that is "");
* ``summary`` and ``usage``: its line in 帮助 (``handlers.commands.help``); no summary, no line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from governance.events import Reply
from handlers.permissions import Permission

if TYPE_CHECKING:
    from handlers.context import Context
    from storage.models import Group

HandlerResult = Reply | list[Reply] | None
Callback = Callable[..., HandlerResult]


@dataclass(frozen=True)
class Target:
    """The group(s) a command's arguments name, and the words after them."""

    groups: tuple["Group", ...]
    rest: str = ""


#: From a command's arguments to its target, or the reply that says why there is none.
TargetRule = Callable[["Context", str], "Target | Reply"]


@dataclass(frozen=True)
class Command:
    keywords: tuple[str, ...]
    callback: Callback
    summary: str
    in_group: bool = True  # may be used by @-mentioning the bot in a group
    anonymous: bool = False  # the message is never recorded with its sender (feedback, reports)
    permission: Permission | None = None  # None: anyone
    target: TargetRule | None = None
    usage: str = ""  # how it is said, for 帮助 (default: its first keyword)
    private_reply: str | None = None  # said in a group when not ``in_group`` (None: the default wording)
    refusal: str | None = None  # what a person without the permission is told (None: the permission's wording)
    name: str = ""  # a stable code for the command (the parser's intent maps to it: ``by_name``)

    def run(self, ctx: "Context", args: str) -> HandlerResult:
        """The callback, once the command's declared requirements hold (each refusal changes nothing)."""
        if self.permission is not None and self.target is None and not self.permission.allows(ctx.person):
            return Reply(self.refusal) if self.refusal else self.permission.refusal(ctx)
        if not self.in_group and not ctx.event.is_direct:
            text = self.private_reply if self.private_reply is not None else f"请私聊我发送“{self.keywords[0]}”。"
            return Reply(text) if text else None
        if self.target is None:
            return self.callback(ctx, args)
        found = self.target(ctx, args)
        if isinstance(found, Reply):
            return found
        if self.permission is not None and not all(self.permission.allows(ctx.person, g) for g in found.groups):
            # the refusal names the group acted on (the first: 合并's group merged away)
            return Reply(self.refusal) if self.refusal else self.permission.refusal(ctx, found.groups[0])
        return self.callback(ctx, *found.groups, found.rest)


_COMMANDS: list[Command] = []  # in registration order (帮助 lists them so)
_BY_KEYWORD: list[Command] = []  # longest keyword first, for matching
_CONVERSATIONS: dict[str, Callback] = {}


def command(*keywords: str, summary: str = "", in_group: bool = True, anonymous: bool = False,
            permission: Permission | None = None, target: TargetRule | None = None, usage: str = "",
            private_reply: str | None = None, refusal: str | None = None, name: str = ""):
    def deco(fn: Callback) -> Callback:
        cmd = Command(tuple(keywords), fn, summary, in_group, anonymous, permission, target, usage,
                      private_reply, refusal, name)
        _COMMANDS.append(cmd)
        # longest keyword first so 这个群没用 wins over shorter prefixes
        _BY_KEYWORD[:] = sorted(_COMMANDS, key=lambda c: -max(len(k) for k in c.keywords))
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
    for cmd in _BY_KEYWORD:
        for kw in cmd.keywords:
            if text == kw:
                return cmd, ""
            if text.startswith(kw):
                rest = text[len(kw):]
                if rest[:1] in (" ", ":") or len(kw) >= 2:
                    return cmd, rest.lstrip(" :")
    return None


def by_name(name: str) -> Command | None:
    """The command registered with ``name=`` (``"create"`` → 建群), or None."""
    return next((c for c in _COMMANDS if c.name and c.name == name), None)


def commands() -> list[Command]:
    """Every command, in registration order."""
    return list(_COMMANDS)


def continuation(intent: str) -> Callback | None:
    return _CONVERSATIONS.get(intent)
