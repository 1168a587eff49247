"""保留、恢复、已解散、合并、保护/取消保护: owners and administrators steer a group's lifecycle.

The state changes live in ``storage.lifecycle``; this module checks who may act and words
the replies. A refusal changes nothing and says who may act.
"""
from __future__ import annotations

from governance import labels
from governance.dates import fmt_date
from governance.lifecycle import LifecycleError
from handlers.context import Context
from handlers.events import Reply
from handlers.groups import owned_target, resolve, split_ref
from handlers.registry import command
from storage import lifecycle, repo
from storage.models import Group



def _admin_refusal(g: Group | None = None) -> Reply:
    unit = f"或“{g.unit}”的单位管理员" if g is not None and g.unit else ""
    return Reply(f"只有管理员{unit}可以进行这项操作。")


@command("保留", summary="保留群（撤销解散提醒）")
def keep(ctx: Context, args: str) -> Reply:
    found = owned_target(ctx, args, rest_may_follow_in_group=True)
    if isinstance(found, Reply):
        return found
    g, reason = found
    if not reason:
        return Reply(f"请写上保留理由，例如“保留 {g.name} 汛期前还要用”。")
    if g.status not in ("active", "warned"):
        return Reply(f"“{g.name}”已不在使用中，不能保留。如需找回请回复“恢复 {g.name}”。")
    vetoed = g.status == "warned"
    try:
        told = lifecycle.keep_group(ctx.session, g, ctx.now, ctx.settings, actor=ctx.person.id, reason=reason)
    except LifecycleError as e:
        return Reply(str(e))
    until = fmt_date(g.kept_until.astimezone(ctx.settings.tz).date(), ctx.today)
    text = f"已保留“{g.name}”至{until}。理由已记录。"
    if vetoed:
        text += "解散提醒已撤销。"
    if told:
        text += f"这是第{g.keep_count}次保留，已同步纪委监委。"
    return Reply(text)


@command("恢复", summary="恢复已解散的群")
def restore(ctx: Context, args: str) -> Reply:
    found = owned_target(ctx, args)
    if isinstance(found, Reply):
        return found
    g, _ = found
    if g.status in ("active", "warned"):
        return Reply(f"“{g.name}”没有解散，无需恢复。")
    if g.status == "restoring":
        return Reply(f"“{g.name}”正在恢复，成员将在几分钟内重新加入。")
    method = g.dissolve_method
    try:
        result = lifecycle.restore_group(ctx.session, g, ctx.now, ctx.settings, actor=ctx.person.id)
    except LifecycleError as e:
        return Reply(f"“{g.name}”{e}。")
    n = len([m for m in (g.dissolve_state or {}).get("members", []) if m != g.owner_id])
    if result == "pending":
        return Reply(f"已恢复“{g.name}”，{n}位成员将在几分钟内重新加入，群名改回原名。")
    if method == "appchat" or g.dissolved_at is None and (g.dissolve_state or {}).get("cancelled_at"):
        return Reply(f"已恢复“{g.name}”，解散已取消。")
    return Reply(f"已恢复“{g.name}”的登记。该群在平台上已解散，如需继续使用请重新建群并报备。")


@command("已解散", summary="告知已按通知手动解散")
def confirm_order(ctx: Context, args: str) -> Reply:
    found = owned_target(ctx, args)
    if isinstance(found, Reply):
        return found
    g, _ = found
    try:
        lifecycle.confirm_order(ctx.session, g, ctx.now, ctx.settings, actor=ctx.person.id)
    except LifecycleError as e:
        return Reply(str(e) + "。")
    return Reply(f"收到，“{g.name}”已记为解散。{ctx.settings.restore_days}天内可回复“恢复 {g.name}”撤销记录。")


def _split_merge(ctx: Context, args: str) -> tuple[str, str] | None:
    positions = [i for i, ch in enumerate(args) if ch == "到"]
    for i in positions:
        a, b = args[:i].strip(), args[i + 1:].strip()
        if a and b and repo.find_groups(ctx.session, a) and repo.find_groups(ctx.session, b):
            return a, b
    for i in positions:
        a, b = args[:i].strip(), args[i + 1:].strip()
        if a and b:
            return a, b
    return None


@command("合并", summary="管理员合并重复群：合并 群A 到 群B")
def merge(ctx: Context, args: str) -> Reply:
    parts = _split_merge(ctx, args)
    if parts is None:
        return Reply("请这样写：“合并 群A 到 群B”，群A的成员将改用群B，群A解散。")
    a = resolve(ctx, parts[0])
    if isinstance(a, Reply):
        return a
    b = resolve(ctx, parts[1])
    if isinstance(b, Reply):
        return b
    if not (ctx.may_administer(a) and ctx.may_administer(b)):
        return _admin_refusal(a)
    members = len(repo.member_ids(ctx.session, a.id))
    try:
        method = lifecycle.merge_group(ctx.session, a, b, ctx.now, ctx.settings, actor=ctx.person.id)
    except LifecycleError as e:
        return Reply(f"不能合并“{a.name}”：{e}。")
    return Reply(f"已安排合并：“{a.name}”的{members}位成员会收到通知改用“{b.name}”；“{a.name}”将解散"
                 f"（{labels.label('method_reply', method)}）。")


def _protect(ctx: Context, args: str, on: bool) -> Reply:
    ref, _ = split_ref(ctx, args)
    g = resolve(ctx, ref)
    if isinstance(g, Reply):
        return g
    if not ctx.may_administer(g):
        return _admin_refusal(g)
    try:
        changed = lifecycle.set_protected(ctx.session, g, on, ctx.now, actor=ctx.person.id)
    except LifecycleError as e:
        return Reply(str(e) + "。")
    if not changed:
        return Reply(f"“{g.name}”{'已经是' if on else '本来就不是'}常设群。")
    if on:
        return Reply(f"已将“{g.name}”设为常设群，不会被提醒或解散。撤销请回复“取消保护 {g.name}”。")
    return Reply(f"已取消“{g.name}”的常设群保护，今后按普通群治理。")


@command("保护", summary="管理员设为常设群")
def protect(ctx: Context, args: str) -> Reply:
    return _protect(ctx, args, True)


@command("取消保护", summary="管理员取消常设群")
def unprotect(ctx: Context, args: str) -> Reply:
    return _protect(ctx, args, False)
