"""建群: the bot creates a temporary group on the person's platform, with the person as its owner,
and registers it, so it can dissolve it by itself when its task ends.

``建群 秋粮收购专班 成员:张三、李四、王五 到期:12月31日``. Members are named as the roster knows
them (``persons.name``; a namesake is told apart by the asker's unit) or by their ids. The
platform is the one the person wrote from, else another configured platform on which they have
an account, among those whose ``Capabilities.create`` is true (WeCom's self-built app: an appchat
group). The platform is not called here: the command writes a request (``storage.creation``) in
its transaction and the scheduler carries it out; the group is registered when the platform
returns its id, and the person is told then (or why not: nothing is registered half).

Registered for the intent ``create`` (``handlers.registry.by_intent``): the parser's intent
``create`` maps to it.
"""
from __future__ import annotations

import re

from sqlalchemy import or_, select

from governance import labels
from governance.dates import DateParseError, fmt_date, parse_expiry
from governance.events import Reply
from handlers.context import Context
from handlers.registry import command
from handlers.text import split_fields
from storage import creation, identity
from storage.models import Person

FIELD_KEYS = {
    "名称": "name", "群名": "name", "群名称": "name",
    "成员": "members", "人员": "members", "群成员": "members",
    "到期": "expires", "期限": "expires", "截止": "expires", "到期日期": "expires", "结束": "expires",
}
MAX_NAME = 50
MAX_MEMBERS = 500
USAGE = "建群 秋粮收购专班 成员:张三、李四、王五 到期:12月31日"
_SPLIT = re.compile(r"[、，,；;\s]+")


def creating_platform(ctx: Context) -> tuple[str, str] | None:
    """(platform name, the person's account on it) of the first platform that can create a group
    for the person: the one they wrote from, else any configured one where they have an account."""
    caps = ctx.services.capabilities
    accounts = identity.accounts_for(ctx.session, ctx.person.id)
    names = [ctx.event.platform, *[n for n in caps if n != ctx.event.platform]]
    for name in names:
        try:
            c = caps[name]
        except KeyError:
            continue
        account = accounts.get(identity.account_platform(name))
        if c.create and account:
            return name, account
    return None


def _resolve(ctx: Context, names: list[str], platform: str) -> tuple[list[creation.Member], list[str]]:
    """The members named, and the problems (Chinese, one per name)."""
    rows = list(ctx.session.execute(select(Person.id, Person.name, Person.unit).where(
        or_(Person.name.in_(names), Person.id.in_(names)))))
    by_id = {r.id: r for r in rows}
    found: list[tuple[str, str]] = []
    problems: list[str] = []
    for name in names:
        if name in by_id:
            found.append((name, by_id[name].name or name))
            continue
        same = [r for r in rows if r.name == name]
        if len(same) > 1 and ctx.person.unit:
            same = [r for r in same if r.unit == ctx.person.unit] or same
        if not same:
            problems.append(f"“{name}”在花名册中找不到")
        elif len(same) > 1:
            problems.append(f"“{name}”在花名册中有{len(same)}人同名，请写其账号")
        else:
            found.append((same[0].id, name))
    account_of = identity.account_ids(ctx.session, [pid for pid, _ in found], identity.account_platform(platform))
    members = []
    for pid, name in dict(found).items():
        if pid == ctx.person.id:
            continue  # the owner is in the group anyway
        if pid not in account_of:
            problems.append(f"“{name}”没有{labels.label('platform', platform)}账号")
            continue
        members.append(creation.Member(pid, name, account_of[pid]))
    return members, problems


@command("建群", "创建群", "新建群", intent="create", summary="让机器人建一个临时工作群（到期后自动解散）", usage=USAGE)
def create_group(ctx: Context, args: str) -> Reply:
    positional, fields = split_fields(args, FIELD_KEYS)
    slots = ctx.slots or {}
    # the parser's slots first (建群 phrased naturally); a name it could not separate from the
    # member list (成员张三… without a colon) is taken from the fields as written
    slot_name = str(slots.get("name") or "")
    name = (fields.get("name") or (slot_name if slot_name and "成员" not in slot_name else "")
            or (positional[0] if positional else "")).strip()
    if not name:
        return Reply(f"请告诉我群名称、成员和到期时间，例如：{USAGE}")
    if len(name) > MAX_NAME:
        return Reply(f"群名称太长了（最多{MAX_NAME}个字），请再发一次。")
    period = slots.get("period")
    if slots.get("period_error"):
        return Reply(str(slots["period_error"]))
    if period is not None and not fields.get("expires"):
        try:
            expires = period.end(ctx.today)
        except DateParseError as e:
            return Reply(str(e))
    else:
        expires_text = fields.get("expires") or " ".join(positional[1:])
        if not expires_text:
            return Reply(f"机器人建的群都是临时群，请说明到期时间，例如：{USAGE}")
        try:
            expires = parse_expiry(expires_text, ctx.today)
        except DateParseError as e:
            return Reply(str(e))
    where = creating_platform(ctx)
    if where is None:
        return Reply("这里的平台不能由机器人建群（机器人不能在该平台上建群，或您在能建群的平台上没有账号）。"
                     "可以自己建群后在群里发送“报备”登记；到期后需要您手动解散。这次没有改动任何内容。")
    platform, owner_account = where
    written = [n for n in _SPLIT.split(fields.get("members", "")) if n]
    names = list(dict.fromkeys(written or [str(n) for n in slots.get("members") or ()]))
    if len(names) > MAX_MEMBERS:
        return Reply(f"成员太多了（最多{MAX_MEMBERS}人）。这次没有改动任何内容。")
    members, problems = _resolve(ctx, names, platform)
    if problems:
        return Reply("没有建群：" + "；".join(problems) + "。请改正后再发一次，这次没有改动任何内容。")
    if not members:
        return Reply(f"请写上至少一位成员，例如：{USAGE}")
    creation.request_group(ctx.session, platform=platform, person=ctx.person, owner_account=owner_account,
                           name=name, members=members, expires_at=expires, at=ctx.now)
    who = "、".join(m.name for m in members)
    return Reply(f"好的，正在{labels.label('platform', platform)}上建群“{name}”（您是群主；成员：{who}；"
                 f"{fmt_date(expires, ctx.today)}到期）。建好后我会告诉您；任务结束后机器人会先提醒，再自动解散这个群。")
