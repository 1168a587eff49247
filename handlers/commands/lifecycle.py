"""保留、恢复、已解散、合并、保护/取消保护/确认保护: owners and administrators steer a group's lifecycle.

The state changes live in ``storage.lifecycle``; this module declares who may act on which group
(``permission=``, ``target=``: enforced by dispatch) and words the replies. A refusal changes
nothing and says who may act.

Vocabulary (the same in every reply, page and export): 常设 = no end date; 临时 = has an end
date; 受保护 = exempt from automatic warning and dissolution. Only an administrator or the
group's unit administrator grants protection; an owner registering a protected category asks
for it (:func:`request_protection`) and the unit administrators confirm with one tap (a
template card, ``card:protect``) or by text (``确认保护 <群>``).
"""
from __future__ import annotations

from governance import labels
import secrets

from sqlalchemy import select

from governance.dates import fmt_date
from governance.lifecycle import LifecycleError
from governance.worktime import WorkTime, next_window_start
from handlers.context import Context
from governance.events import Reply
from handlers import dialogue
from handlers.groups import merged_pair, named_group, named_group_or_here, shown
from handlers.permissions import ADMIN, ADMINISTRATORS, OWNER, UNIT_ADMIN
from handlers.registry import Target, command, conversation
from storage import audit, lifecycle, repo
from storage.models import Group, Person
from storage.outbox import enqueue, notify, person_channel

PROTECTED_MEANS = "不会被自动提醒或解散"



@command("保留", summary="不同意解散，保留群（撤销解散提醒）", usage="保留 群名 理由", target=named_group_or_here,
         permission=OWNER | ADMIN | UNIT_ADMIN, intent="keep", example="防汛群还要用，别解散")
def keep(ctx: Context, g: Group, reason: str) -> Reply:
    reason = (ctx.slots.get("reason") or reason or "").strip()
    if not reason:
        return dialogue.ask_pending(ctx, "reason", f"请写上保留理由，例如“保留 {g.name} 汛期前还要用”。")
    if g.status not in ("active", "warned"):
        return Reply(f"“{g.name}”已不在使用中，不能保留。如需找回请回复“恢复 {g.name}”。")
    vetoed = g.status == "warned"
    try:
        told = lifecycle.keep_group(ctx.session, g, ctx.now, ctx.settings, actor=ctx.person.id, reason=reason)
    except LifecycleError as e:
        return Reply(str(e))
    until = fmt_date(g.kept_until.astimezone(ctx.settings.tz).date(), ctx.today)
    text = f"已保留“{shown(ctx, g)}”至{until}。理由已记录。"
    if vetoed:
        text += "解散提醒已撤销。"
    if told:
        text += f"这是第{g.keep_count}次保留，已同步纪委监委。"
    return Reply(text)


@command("恢复", summary="找回已解散的群", usage="恢复 群名", target=named_group,
         permission=OWNER | ADMIN | UNIT_ADMIN, intent="restore", example="把森林防火群找回来")
def restore(ctx: Context, g: Group, _rest: str) -> Reply:
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


@command("已解散", summary="告知已按通知手动解散", usage="已解散 群名", target=named_group,
         permission=OWNER | ADMIN | UNIT_ADMIN, intent="confirm_order", example="已解散 森林防火群")
def confirm_order(ctx: Context, g: Group, _rest: str) -> Reply:
    try:
        lifecycle.confirm_order(ctx.session, g, ctx.now, ctx.settings, actor=ctx.person.id)
    except LifecycleError as e:
        return Reply(str(e) + "。")
    return Reply(f"收到，“{g.name}”已记为解散。{ctx.settings.restore_days}天内可回复“恢复 {g.name}”撤销记录。")


@command("合并", summary="合并重复群，群A的成员改用群B", usage="合并 群A 到 群B", target=merged_pair,
         permission=ADMIN | UNIT_ADMIN, intent="merge", example="把防火巡查群并到防汛群")
def merge(ctx: Context, a: Group, b: Group, _rest: str) -> Reply:
    members = len(repo.member_ids(ctx.session, a.id))
    try:
        method = lifecycle.merge_group(ctx.session, a, b, ctx.now, ctx.settings, capabilities=ctx.services.capabilities,
                                       actor=ctx.person.id)
    except LifecycleError as e:
        return Reply(f"不能合并“{a.name}”：{e}。")
    how = labels.label('method_reply', method)
    if not members:
        return Reply(f"已安排合并：“{a.name}”的成员名单未知，无法逐一通知，已请群主告知成员改用“{b.name}”；"
                     f"“{a.name}”将解散（{how}）。")
    return Reply(f"已安排合并：“{a.name}”的{members}位成员会收到通知改用“{b.name}”；“{a.name}”将解散（{how}）。")


def _protected_reply(g: Group) -> str:
    return f"已将“{g.name}”设为受保护群，{PROTECTED_MEANS}。撤销请回复“取消保护 {g.name}”。"


def _tell_requester(ctx: Context, g: Group, requester: str | None) -> None:
    if requester and requester != ctx.person.id:
        who = repo.display_name(ctx.session, ctx.person.id)
        notify(ctx.session, person_id=requester, kind="protect_granted", group_id=g.id, at=ctx.now,
               text=f"{who}已确认您登记的“{g.name}”为受保护群，{PROTECTED_MEANS}。",
               dedupe_key=f"protect-granted:{g.id}:{ctx.now.isoformat()}:{requester}"[:200])


def _set_protection(ctx: Context, g: Group, on: bool) -> Reply:
    """Protection granted or withdrawn by an administrator (of the group's unit): the caller has
    checked the permission (``ADMINISTRATORS``)."""
    requester = g.protect_requested_by
    try:
        changed = lifecycle.set_protected(ctx.session, g, on, ctx.now, actor=ctx.person.id)
    except LifecycleError as e:
        return Reply(str(e) + "。")
    if not changed:
        return Reply(f"“{g.name}”{'已经是' if on else '本来就不是'}受保护群。")
    if on:
        _tell_requester(ctx, g, requester)
        return Reply(_protected_reply(g))
    return Reply(f"已取消“{g.name}”的受保护状态，今后按普通群治理（长期没有工作消息会先提醒群主）。")


def protect_card(task_id: str, g: Group, requester: str) -> dict:
    """The template card asking a unit administrator to confirm protection (one tap)."""
    return {
        "card_type": "button_interaction",
        "main_title": {"title": f"确认保护“{g.name}”？",
                       "desc": f"{requester}登记为{g.category or '受保护类别'}（{g.unit or '未填单位'}）；"
                               f"受保护群{PROTECTED_MEANS}"},
        "task_id": task_id,
        "button_list": [{"text": "确认保护", "style": 1, "key": f"protect:{g.id}"}],
    }


def _protection_approvers(ctx: Context, g: Group) -> list[str]:
    """The unit's administrators, else the administrators."""
    q = select(Person.id).order_by(Person.id)
    if g.unit:
        ids = list(ctx.session.execute(q.where(Person.role == "unit_admin", Person.unit == g.unit)).scalars())
        if ids:
            return ids
    return list(ctx.session.execute(q.where(Person.role == "admin")).scalars())


def request_protection(ctx: Context, g: Group) -> None:
    """An owner registered a protected category: record the request, ask the unit administrators
    (a card with one button, the text fallback beside it), in working time."""
    g.protect_requested_at, g.protect_requested_by = ctx.now, ctx.person.id
    audit.record(ctx.session, actor=ctx.person.id, action="protect_request", at=ctx.now, group_id=g.id,
                 reason=f"登记为“{g.category}”，待单位管理员确认保护")
    requester = repo.display_name(ctx.session, ctx.person.id)
    text = (f"{requester}登记了“{g.name}”（{g.category}，{g.unit or '未填单位'}），申请设为受保护群"
            f"（{PROTECTED_MEANS}）。同意请回复“确认保护 {g.name}”。")
    when = next_window_start(ctx.now, WorkTime.from_settings(ctx.settings))
    for pid in _protection_approvers(ctx, g):
        task_id = "protect:" + secrets.token_hex(8)
        enqueue(ctx.session, channel=person_channel(pid), recipient=pid, kind="protect_request", at=ctx.now, not_before=when,
                payload={"card": protect_card(task_id, g, requester), "text": text},
                dedupe_key=f"protect-request:{g.id}:{ctx.now.isoformat()}:{pid}"[:200])


@command("保护", summary=f"设为受保护群（{PROTECTED_MEANS}）", usage="保护 群名", target=named_group,
         permission=ADMIN | UNIT_ADMIN, intent="protect", example="把防汛抗旱群设为常设")
def protect(ctx: Context, g: Group, _rest: str) -> Reply:
    return _set_protection(ctx, g, True)


@command("确认保护", summary="确认群主申请的保护", usage="确认保护 群名", target=named_group,
         permission=ADMIN | UNIT_ADMIN, intent="confirm_protect", example="确认保护 防汛抗旱群")
def confirm_protect(ctx: Context, g: Group, _rest: str) -> Reply:
    return _set_protection(ctx, g, True)


@command("取消保护", summary="取消受保护，今后按普通群治理", usage="取消保护 群名", target=named_group,
         permission=ADMIN | UNIT_ADMIN, intent="unprotect", example="取消保护 防汛抗旱群")
def unprotect(ctx: Context, g: Group, _rest: str) -> Reply:
    return _set_protection(ctx, g, False)


@conversation("card:protect")
def protect_clicked(ctx: Context, _conv) -> Reply | None:
    """One tap on the card of :func:`request_protection`."""
    key = str(ctx.event.data.get("event_key", ""))
    gid = key.split(":", 1)[1] if key.startswith("protect:") else None
    g = ctx.session.get(Group, gid) if gid else None
    if g is None:
        return None
    if not ADMINISTRATORS.allows(ctx.person, g):  # a card is no command: its permission is checked here
        return ADMINISTRATORS.refusal(ctx, g)
    reply = _set_protection(ctx, g, True)
    if g.protected:
        code = ctx.event.data.get("response_code")
        if code:
            channel = ctx.event.data.get("card_update_channel") or "card_update"  # the platform's (Feishu: feishu_card)
            enqueue(ctx.session, channel=channel, recipient=str(code)[:128], kind="card_update",
                    payload={"response_code": code, "card": {"replace_name": "已确认保护"}}, at=ctx.now,
                    dedupe_key=f"card_update:{code}"[:200])
    return reply
