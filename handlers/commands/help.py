"""帮助: what the bot can do, written from the registered commands (``usage``：``summary``).

Each person reads the commands they may use: those anyone may use first, then the ones their role
allows (合并、保护 for administrators, 看板 for the commission). A command without a summary (the
pulse answer) is not listed; one that only works in a direct chat says so.
"""
from __future__ import annotations

from governance import labels
from governance.events import Reply
from handlers.context import Context
from handlers.registry import Command, command, commands

INTRO = "我是群治助手，帮您管好工作群："
PRIVATE = "（请私聊我）"


def _line(cmd: Command) -> str:
    return f"· {cmd.usage or cmd.keywords[0]}：{cmd.summary}{'' if cmd.in_group else PRIVATE}"


def help_text(ctx: Context) -> str:
    listed = [c for c in commands() if c.summary and c.callback is not help_command
              and (c.permission is None or c.permission.may_ever(ctx.person))]
    everyone = [c for c in listed if c.permission is None or "owner" in c.permission.roles]
    by_role = [c for c in listed if c not in everyone]
    lines = [INTRO, *map(_line, everyone)]
    if by_role:
        lines += [f"{labels.role(ctx.person.role)}还可以：", *map(_line, by_role)]
    return "\n".join(lines)


@command("帮助", "help", "?", "菜单", summary="看我能做什么")
def help_command(ctx: Context, args: str) -> Reply:
    return Reply(help_text(ctx))
