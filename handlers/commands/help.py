"""帮助: what the bot can do, written from the registered commands (``usage``：``summary``, and one
example), and ``帮助 续期``: one command explained.

Each person reads the commands they may use: those anyone may use first, then the ones their role
allows (合并、保护 for administrators, 看板 for the commission). A command without a summary (the
pulse answer, 你好, 取消) is not listed; one that only works in a direct chat says so.
"""
from __future__ import annotations

from datetime import date

from governance import labels
from governance.events import Reply
from handlers.context import Context
from handlers.registry import Command, by_intent, by_keyword, command, commands

INTRO = "我是群治助手，帮您管好工作群："
PRIVATE = "（请私聊我）"
OUTRO = "不用记格式，直接说就行，例如“秋粮群延期一个月”。发“帮助 续期”看一条的详细说明。"


def _line(cmd: Command) -> str:
    return f"· {cmd.usage or cmd.keywords[0]}：{cmd.summary}{'' if cmd.in_group else PRIVATE}"


def _listed(ctx: Context) -> list[Command]:
    return [c for c in commands() if c.summary and c.callback is not help_command
            and (c.permission is None or c.permission.may_ever(ctx.person))]


def help_text(ctx: Context) -> str:
    listed = _listed(ctx)
    everyone = [c for c in listed if c.permission is None or "owner" in c.permission.roles]
    by_role = [c for c in listed if c not in everyone]
    lines = [INTRO, *map(_line, everyone)]
    if by_role:
        lines += [f"{labels.role(ctx.person.role)}还可以：", *map(_line, by_role)]
    lines.append(OUTRO)
    return "\n".join(lines)


def _topic(ctx: Context, topic: str) -> Command | None:
    cmd = by_keyword(topic)
    if cmd is not None:
        return cmd
    import nlu

    p = nlu.parse(topic, today=ctx.today if ctx.event.at else date.today())
    if p is None:
        return None
    from handlers.classify import intent_of

    return by_intent(intent_of(p))


def explain(cmd: Command) -> str:
    lines = [f"{cmd.name}：{cmd.summary}。{'' if cmd.in_group else '请私聊我发送。'}",
             f"格式：{cmd.usage or cmd.name}"]
    if cmd.example and cmd.example != cmd.usage:
        lines.append(f"也可以直接说：{cmd.example}")
    if cmd.explain:
        lines.append(cmd.explain)
    return "\n".join(lines)


@command("帮助", "help", "?", "菜单", summary="看我能做什么", intent="help", example="怎么用")
def help_command(ctx: Context, args: str) -> Reply:
    topic = (ctx.slots.get("topic") or "").strip()
    if topic:
        cmd = _topic(ctx, topic)
        if cmd is not None and cmd.summary and cmd in _listed(ctx):
            return Reply(explain(cmd))
        return Reply(f"没有“{topic}”这个功能。" + help_text(ctx))
    return Reply(help_text(ctx))
