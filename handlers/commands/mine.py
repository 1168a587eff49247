"""我的群: the groups I own and the groups I am in, with status and end dates."""
from __future__ import annotations

from sqlalchemy import select

from governance import labels
from governance.dates import fmt_date
from handlers.context import Context
from governance.events import Reply
from handlers.registry import command
from storage.models import Group, Membership

SHOW = 8


def describe(g: Group, ctx: Context) -> str:
    bits = [labels.status(g.status) + ("（可恢复）" if g.status == "dissolved" else "")]
    if g.protected:
        bits.append("受保护")
    if g.temporary and g.expires_at:
        bits.append(f"{fmt_date(g.expires_at, ctx.today)}到期")
    if not g.registered_at:
        bits.append("未登记")
    return f"{g.name}（{'，'.join(bits)}）"


def _lines(groups: list[Group], ctx: Context) -> str:
    shown = "\n".join("· " + describe(g, ctx) for g in groups[:SHOW])
    if len(groups) > SHOW:
        shown += f"\n……等共{len(groups)}个"
    return shown


@command("我的群", "我的群组", summary="看我建的群和我在的群", intent="mine", example="我在哪些群里")
def my_groups(ctx: Context, args: str) -> Reply:
    live = Group.status.in_(("active", "warned", "dissolved"))
    owned = ctx.session.execute(select(Group).where(Group.owner_id == ctx.person.id, live)
                                .order_by(Group.name)).scalars().all()
    owned_ids = {g.id for g in owned}
    member = [g for g in ctx.session.execute(
        select(Group).join(Membership, Membership.group_id == Group.id)
        .where(Membership.person_id == ctx.person.id, live).order_by(Group.name)).scalars().all()
        if g.id not in owned_ids]
    if not owned and not member:
        return Reply("您还没有登记的群，也不在我知道的群里。发“报备”登记一个群。")
    parts = []
    if owned:
        parts.append(f"我建的群（{len(owned)}个）：\n" + _lines(owned, ctx))
    if member:
        parts.append(f"我在的群（{len(member)}个）：\n" + _lines(member, ctx))
    return Reply("\n".join(parts))
