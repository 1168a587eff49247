"""Command registry: a handler is a match rule plus a callback, registered with ``@command``.

Adding a command is adding one file under ``handlers/commands/`` (imported by its package). What a
command needs is declared on it and enforced by :meth:`Command.run`, never repeated in its body:

* ``permission`` (:mod:`handlers.permissions`): who may use it, checked against the group it names;
* ``target``: how its arguments name the group(s) it acts on (``handlers.groups.named_group`` …);
  the callback then gets ``(ctx, *groups, rest)`` instead of ``(ctx, args)``;
* ``in_group``: whether it may be said in a group (False: only in a direct chat, answered with
  ``private_reply`` in a group, silence if that is "");
* ``summary`` and ``usage``: its line in 帮助 (``handlers.commands.help``); no summary, no line;
  ``example``: one natural example, shown by 帮助 and by ``帮助 <命令>``;
* ``intent``: the :mod:`nlu` intent the command answers (``handlers.classify`` maps a parse to
  it: the parser is the only matcher; ``keywords`` name the command in 帮助 and in tests).

A pending question (one per person, the ``conversations`` row) is answered by the continuation
registered for its intent (:func:`conversation`); ``takes`` decides which messages are answers
while it is open (default: see ``handlers.dialogue.takes``).
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
    intent: str = ""  # the nlu intent it answers (nlu.intents)
    example: str = ""  # one natural example for 帮助 (default: ``usage``)
    explain: str = ""  # what ``帮助 <命令>`` adds to the summary

    @property
    def name(self) -> str:
        return self.keywords[0]

    def run(self, ctx: "Context", args: str) -> HandlerResult:
        """The callback, once the command's declared requirements hold (each refusal changes nothing)."""
        ctx.command = self
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
        return self.run_on(ctx, found.groups, found.rest)

    def run_on(self, ctx: "Context", groups: tuple["Group", ...], rest: str = "") -> HandlerResult:
        """The callback on groups already resolved (a pending question answered): the permission
        is checked again against them, as :meth:`run` does."""
        ctx.command = self
        if self.permission is not None and not all(self.permission.allows(ctx.person, g) for g in groups):
            return Reply(self.refusal) if self.refusal else self.permission.refusal(ctx, groups[0])
        return self.callback(ctx, *groups, rest)


_COMMANDS: list[Command] = []  # in registration order (帮助 lists them so)
_BY_KEYWORD: list[Command] = []  # longest keyword first, for matching
_BY_INTENT: dict[str, Command] = {}
_CONVERSATIONS: dict[str, Callback] = {}
_TAKES: dict[str, Callable[..., bool]] = {}


def command(*keywords: str, summary: str = "", in_group: bool = True, anonymous: bool = False,
            permission: Permission | None = None, target: TargetRule | None = None, usage: str = "",
            private_reply: str | None = None, refusal: str | None = None, intent: str = "", example: str = "",
            explain: str = ""):
    def deco(fn: Callback) -> Callback:
        cmd = Command(tuple(keywords), fn, summary, in_group, anonymous, permission, target, usage,
                      private_reply, refusal, intent, example, explain)
        if intent:
            if intent in _BY_INTENT:
                raise ValueError(f"intent {intent!r} is answered by two commands")
            _BY_INTENT[intent] = cmd
        _COMMANDS.append(cmd)
        # longest keyword first so 这个群没用 wins over shorter prefixes
        _BY_KEYWORD[:] = sorted(_COMMANDS, key=lambda c: -max(len(k) for k in c.keywords))
        return fn

    return deco


def conversation(intent: str, *, takes: Callable[..., bool] | None = None):
    """Register the continuation of a multi-turn dialogue (state kept in the ``conversations`` row
    whose ``intent`` is ``intent``): ``fn(ctx, conv)`` gets the person's next answer (``ctx.text``,
    ``ctx.parse``). ``takes(conv, parse, text) -> bool``: which messages are answers while it is
    open (default ``handlers.dialogue.takes``: anything that is not clearly another command)."""

    def deco(fn: Callback) -> Callback:
        _CONVERSATIONS[intent] = fn
        if takes is not None:
            _TAKES[intent] = takes
        return fn

    return deco


def by_intent(intent: str) -> Command | None:
    """The command answering an nlu intent (None: no such command registered here)."""
    return _BY_INTENT.get(intent)


def takes_for(intent: str) -> Callable[..., bool] | None:
    return _TAKES.get(intent)


def by_keyword(keyword: str) -> Command | None:
    """The command a keyword names (帮助 and tests; messages are classified by ``handlers.classify``)."""
    for cmd in _COMMANDS:
        if keyword in cmd.keywords:
            return cmd
    return None


def match(text: str) -> tuple[Command, str] | None:
    """The keyword matcher the bot used before the parser (issue 13): kept only as the baseline
    ``benchmarks/nlu.py`` measures the parser against. Nothing in the bot classifies with it.

    Find the command a normalised text starts with; return it with the rest as arguments."""
    for cmd in _BY_KEYWORD:
        for kw in cmd.keywords:
            if text == kw:
                return cmd, ""
            if text.startswith(kw):
                rest = text[len(kw):]
                if rest[:1] in (" ", ":") or len(kw) >= 2:
                    return cmd, rest.lstrip(" :")
    return None


def commands() -> list[Command]:
    """Every command, in registration order."""
    return list(_COMMANDS)


def continuation(intent: str) -> Callback | None:
    return _CONVERSATIONS.get(intent)
