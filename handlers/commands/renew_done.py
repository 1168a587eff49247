"""续期 <群> <期限> and 完成 <群>: the owner extends a temporary group or declares its task done."""
from __future__ import annotations

from governance.dates import DateParseError, fmt_date, parse_expiry
from handlers.context import Context
from governance.events import Reply
from handlers.groups import named_group, named_group_or_here
from handlers.permissions import ADMIN, OWNER, UNIT_ADMIN
from handlers.registry import command
from governance.lifecycle import LifecycleError
from storage import audit, lifecycle
from storage.models import Group



@command("续期", "延期", summary="延长临时群", usage="续期 群名 30天", target=named_group_or_here,
         permission=OWNER | ADMIN | UNIT_ADMIN)
def renew(ctx: Context, g: Group, span: str) -> Reply:
    if g.status not in ("active", "warned"):
        return Reply(f"“{g.name}”已解散，不能续期。如需找回请回复“恢复 {g.name}”。")
    if g.protected:
        return Reply(f"“{g.name}”是受保护群，没有到期日，不能续期（受保护群不会被自动提醒或解散）。"
                     f"如需改为临时群，请管理员先回复“取消保护 {g.name}”。")
    if not span:
        return Reply(f"请写上新的期限，例如“续期 {g.name} 30天”或“续期 {g.name} 12月31日”。")
    today = ctx.today
    base = g.expires_at if g.expires_at and g.expires_at > today else today
    try:
        new = parse_expiry(span, today, base=base)
    except DateParseError as e:
        return Reply(str(e))
    try:
        vetoed = lifecycle.renew_group(ctx.session, g, new, ctx.now, actor=ctx.person.id, reason=span)
    except LifecycleError as e:
        return Reply(str(e))
    extra = "，解散提醒已撤销" if vetoed else ""
    return Reply(f"已续期：“{g.name}”{fmt_date(new, today)}到期{extra}。")


@command("完成", "结束", summary="临时群任务完成，先通知成员再解散", usage="完成 群名", target=named_group,
         permission=OWNER | ADMIN | UNIT_ADMIN)
def done(ctx: Context, g: Group, _rest: str) -> Reply:
    if g.protected:
        return Reply(f"“{g.name}”是受保护群，不会因任务完成而解散。")
    if g.done_at is not None:
        return Reply(f"“{g.name}”已标记为任务完成。")
    if g.status not in ("active", "warned"):
        return Reply(f"“{g.name}”已经不在使用中。")
    g.done_at = ctx.now
    g.updated_at = ctx.now
    audit.record(ctx.session, actor=ctx.person.id, action="done", at=ctx.now, group_id=g.id, reason="群主宣布任务完成")
    days = ctx.settings.grace_days
    return Reply(f"好的，“{g.name}”已标记任务完成。成员会先收到解散通知，{days}天内无异议再解散，"
                 f"解散后{ctx.settings.restore_days}天内可恢复。")


