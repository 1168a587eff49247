"""续期 <群> <期限> and 完成 <群>: the owner extends a temporary group or declares its task done."""
from __future__ import annotations

from governance.dates import DateParseError
from governance.events import Reply
from governance.lifecycle import LifecycleError
from handlers import dialogue
from handlers.context import Context
from handlers.groups import named_group, named_group_or_here, shown
from handlers.permissions import ADMIN, OWNER, UNIT_ADMIN
from handlers.registry import command
from nlu import parse_period, renewal_base, say_date
from storage import lifecycle
from storage.models import Group

ASK_PERIOD = "“{name}”延到哪天？例如“30天”“两个月”“月底”“12月31日”。"


def new_expiry(ctx: Context, g: Group, span: str):
    """The end date the command's period means (a span adds to a future expiry), or a reply."""
    today = ctx.today
    base = renewal_base(g.expires_at, today)
    if ctx.slots.get("period_error"):
        return dialogue.ask_pending(ctx, "period", ctx.slots["period_error"])
    period = ctx.slots.get("period")
    try:
        if period is not None:
            return period.end(today, base=base)
        text = (ctx.slots.get("period_text") or span or "").strip()
        if not text:
            return dialogue.ask_pending(ctx, "period", ASK_PERIOD.format(name=shown(ctx, g)),
                                        form=f"请写上新的期限，例如“续期 {g.name} 30天”。")
        return parse_period(text, today, base=base)
    except DateParseError as e:
        return dialogue.ask_pending(ctx, "period", f"{e}\n" + ASK_PERIOD.format(name=shown(ctx, g)))


@command("续期", "延期", summary="延长临时群", usage="续期 群名 30天", example="秋粮群延期一个月", intent="renew",
         target=named_group_or_here, permission=OWNER | ADMIN | UNIT_ADMIN,
         explain="期限可以写天数、月数或日期（30天、两个月、月底、下周五、春节前）；到期日还没到时，从原到期日往后加。")
def renew(ctx: Context, g: Group, span: str) -> Reply:
    if g.status not in ("active", "warned"):
        return Reply(f"“{g.name}”已解散，不能续期。如需找回请回复“恢复 {g.name}”。")
    if g.protected:
        return Reply(f"“{g.name}”是受保护群，没有到期日，不能续期（受保护群不会被自动提醒或解散）。"
                     f"如需改为临时群，请管理员先回复“取消保护 {g.name}”。")
    new = new_expiry(ctx, g, span)
    if isinstance(new, Reply):
        return new
    period = ctx.slots.get("period")
    reason = (period.text if period is not None else ctx.slots.get("period_text") or span or "").strip() or "续期"
    try:
        vetoed = lifecycle.renew_group(ctx.session, g, new, ctx.now, actor=ctx.person.id, reason=reason)
    except LifecycleError as e:
        return Reply(str(e))
    extra = "，解散提醒已撤销" if vetoed else ""
    return Reply(f"已把“{shown(ctx, g)}”延至{say_date(new)}{extra}。")


@command("完成", "结束", summary="临时群任务完成，先通知成员再解散", usage="完成 群名", example="秋粮专班任务完成了",
         intent="done", target=named_group, permission=OWNER | ADMIN | UNIT_ADMIN,
         explain="成员会先收到解散通知，无异议再解散；10分钟内回复“撤销”可取消。")
def done(ctx: Context, g: Group, _rest: str) -> Reply:
    if g.protected:
        return Reply(f"“{g.name}”是受保护群，不会因任务完成而解散。")
    if g.done_at is not None:
        return Reply(f"“{g.name}”已标记为任务完成。")
    if g.status not in ("active", "warned"):
        return Reply(f"“{g.name}”已经不在使用中。")
    lifecycle.mark_done(ctx.session, g, ctx.now, actor=ctx.person.id, reason="群主宣布任务完成")
    days = ctx.settings.grace_days
    return Reply(f"好的，“{shown(ctx, g)}”已标记任务完成。成员会先收到解散通知，{days}天内无异议再解散，"
                 f"解散后{ctx.settings.restore_days}天内可恢复；10分钟内回复“撤销”可取消。")
