"""Helpers shared by the commands that act on one group (保留、续期、完成、恢复 …)."""
from __future__ import annotations

from handlers.context import Context
from handlers.registry import Target
from governance.events import Reply
from storage import repo
from storage.models import Group


def resolve(ctx: Context, ref: str) -> Group | Reply:
    """The group a cadre means by ``ref`` (or the group the message was sent in), or a reply saying why not."""
    ref = ref.strip()
    if not ref and ctx.event.group_id:
        g = ctx.session.get(Group, ctx.event.group_id)
        if g is not None:
            return g
    if not ref:
        return Reply("请写上群名称，例如“续期 秋粮收购专班 30天”。")
    found = repo.find_groups(ctx.session, ref)
    if not found:
        return Reply(f"没有找到名为“{ref}”的群。发“我的群”可查看您的群。")
    if len(found) > 1:
        mine = [g for g in found if g.owner_id == ctx.person.id]
        if len(mine) == 1:
            return mine[0]
        same_unit = [g for g in found if ctx.person.unit and g.unit == ctx.person.unit]
        if len(same_unit) == 1:
            return same_unit[0]
        lines = "；".join(f"{g.id}（{g.unit or '未填单位'}）" for g in found[:5])
        return Reply(f"有{len(found)}个群叫“{ref}”，请改用群编号：{lines}")
    return found[0]


def split_ref(ctx: Context, args: str, *, rest_may_follow_in_group: bool = False) -> tuple[str, str]:
    """Split ``<群> <rest>``: the longest leading words that name a known group, else the first word.

    Said inside a group, ``续期 30天`` or ``保留 汛期还要用`` mean that group
    (``rest_may_follow_in_group``); for the other commands an unknown name is an error, never
    the current group (a typo must not mark the wrong group done)."""
    words = args.split(" ")
    for n in range(len(words), 0, -1):
        candidate = " ".join(words[:n])
        if repo.find_groups(ctx.session, candidate):
            return candidate, " ".join(words[n:]).strip()
    if rest_may_follow_in_group and ctx.event.group_id and words:
        return "", args.strip()
    return words[0] if words else "", " ".join(words[1:]).strip()


def named_group(ctx: Context, args: str) -> Target | Reply:
    """``<群> <rest>``: the group named (an unknown name is an error, never the current group: a
    typo must not mark the wrong group done), and the rest. A command's ``target``."""
    ref, rest = split_ref(ctx, args)
    g = resolve(ctx, ref)
    return g if isinstance(g, Reply) else Target((g,), rest)


def named_group_or_here(ctx: Context, args: str) -> Target | Reply:
    """As :func:`named_group`, but said inside a group the rest may follow alone (``续期 30天``,
    ``保留 汛期还要用``: that group). A command's ``target``."""
    ref, rest = split_ref(ctx, args, rest_may_follow_in_group=True)
    g = resolve(ctx, ref)
    return g if isinstance(g, Reply) else Target((g,), rest)
