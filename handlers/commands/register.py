"""报备 / 登记: register a work group, in one message or field by field in a short dialogue."""
from __future__ import annotations

from datetime import date

from governance.dates import DateParseError, fmt_date
from handlers.context import Context
from governance.events import Reply
from handlers.permissions import ADMINISTRATORS, CHANGERS
from handlers import dialogue
from handlers.registry import command, conversation
from nlu import parse_period, split_fields
from storage import audit, lifecycle, repo
from storage.models import Conversation, Group

FIELD_KEYS = {
    "名称": "name", "群名": "name", "群名称": "name", "名字": "name",
    "用途": "purpose", "目的": "purpose", "作用": "purpose",
    "单位": "unit", "部门": "unit",
    "类别": "category", "类型": "category", "分类": "category",
    "到期": "expires", "期限": "expires", "截止": "expires", "到期日期": "expires", "到期时间": "expires",
    "结束": "expires",
}
QUESTIONS = {
    "name": "好的，请告诉我群名称。",
    "purpose": "这个群做什么用？（一句话即可）",
    "unit": "这个群属于哪个单位？",
    "category": "是常设群还是临时群？临时群请说明到期时间，例如“到12月31日”或“30天”。",
    "expires": "临时群到哪天结束？例如“12月31日”“30天”“月底”。",
}
MAX_NAME = 50
MAX_PURPOSE = 200
MAX_CATEGORY = 32  # groups.category is VARCHAR(32)


def _category(ctx: Context, text: str) -> tuple[str | None, str]:
    """Pick a category out of an answer like “临时群，到月底”; return it and the remaining text."""
    t = text.strip()
    known = list(ctx.settings.protected_categories) + list(ctx.settings.temporary_categories) + ["常设群"]
    for cat in sorted(known, key=len, reverse=True):
        if t.startswith(cat):
            return cat, t[len(cat):].strip(" ,:")
    for word, cat in (("临时", "临时群"), ("常设", "常设群"), ("长期", "常设群")):
        if t.startswith(word):
            return cat, t[len(word):].lstrip("群").strip(" ,:")
    return None, t


def _is_temporary(ctx: Context, category: str) -> bool:
    return category in ctx.settings.temporary_categories or "临时" in category or "专班" in category


def _set_expiry(ctx: Context, data: dict, text: str) -> Reply | None:
    try:
        data["expires"] = parse_period(text, ctx.today).isoformat()
    except DateParseError as e:
        return Reply(str(e))
    return None


def _take(ctx: Context, data: dict, field: str, value: str) -> Reply | None:
    """Validate one answer into ``data``; a reply means the answer was refused (nothing stored)."""
    value = value.strip()
    if not value:
        return Reply(QUESTIONS[field])
    if field == "name":
        if len(value) > MAX_NAME:
            return Reply(f"群名称太长了（最多{MAX_NAME}个字），请再发一次。")
        taken = _owned_by_another(ctx, value, data)
        if taken is not None:
            return taken
        data["name"] = value
    elif field == "purpose":
        data["purpose"] = value[:MAX_PURPOSE]
    elif field == "unit":
        data["unit"] = value[:64]
    elif field == "category":
        cat, rest = _category(ctx, value)
        if cat is None:
            cat, rest = value.split(" ")[0], " ".join(value.split(" ")[1:])
            if not cat.endswith("群"):
                return Reply("没听清类别。" + QUESTIONS["category"])
        if len(cat) > MAX_CATEGORY:
            return Reply(f"类别太长了（最多{MAX_CATEGORY}个字），例如“临时群”“机关群”。")
        data["category"] = cat
        if rest and _is_temporary(ctx, cat):
            return _set_expiry(ctx, data, rest)
    elif field == "expires":
        return _set_expiry(ctx, data, value)
    return None


def _missing(ctx: Context, data: dict) -> str | None:
    for field in ("name", "purpose"):
        if not data.get(field):
            return field
    if not data.get("unit"):
        if ctx.person.unit:
            data["unit"] = ctx.person.unit
        else:
            return "unit"
    if not data.get("category"):
        return "category"
    if _is_temporary(ctx, data["category"]) and not data.get("expires"):
        return "expires"
    return None


def _owned_by_another(ctx: Context, name: str, data: dict) -> Reply | None:
    """A name someone else owns (in the unit it would be registered in) is refused at once, naming
    the owner, before any question is asked; nothing is changed."""
    if data.get("group_id"):
        return None  # said inside the group: that group, whoever asks (the owner check comes at the end)
    unit = data.get("unit") or ctx.person.unit
    for g in repo.find_groups(ctx.session, name):
        if g.status in ("dissolved", "purged", "merged") or not g.owner_id or g.owner_id == ctx.person.id:
            continue
        if unit and g.unit and g.unit != unit:
            continue
        if not CHANGERS.allows(ctx.person, g):
            owner = repo.display_name(ctx.session, g.owner_id)
            return Reply(f"“{g.name}”已由{owner}登记，只有群主（{owner}）或管理员可以修改，这次没有改动任何内容。")
    return None


def _advance(ctx: Context, data: dict, problem: Reply | None = None, step: str | None = None) -> Reply:
    """Ask for the next missing field (or again for ``step``, refused with ``problem``), else register."""
    field = step or _missing(ctx, data)
    if field is not None:
        question = QUESTIONS[field]
        if problem is not None:
            question = problem.text if problem.text.endswith(QUESTIONS[field]) else f"{problem.text}\n{question}"
        return dialogue.ask(ctx, "register", {**data, "step": field}, question, what="报备")
    if ctx.session.get(Conversation, ctx.person.id) is not None and ctx.in_dialogue:
        dialogue.close(ctx)
    return _finish(ctx, data)


def _target_group(ctx: Context, data: dict) -> Group | Reply | None:
    if data.get("group_id"):
        return repo.ensure_group(ctx.session, group_id=data["group_id"], platform=ctx.event.platform, at=ctx.now,
                                 name=data["name"], source="chat")
    for g in repo.find_groups(ctx.session, data["name"]):
        if g.status in ("dissolved", "purged", "merged"):
            continue
        if g.owner_id == ctx.person.id:
            return g  # the owner updates its own registration
        if g.owner_id is None and ADMINISTRATORS.allows(ctx.person, g):
            return g  # an administrator registers an unowned ledger group for its owner
        if g.unit == data.get("unit"):
            if g.owner_id is None:
                # Stating the unit proves nothing: an unowned group is claimed from inside it
                # (the platform vouches for the sender being there) or by its unit's administrator.
                return _unclaimable(g)
            return g  # same name in the same unit, owned by someone else: the owner check refuses
    # An unowned group seen only in activity is claimed from inside it (报备 sent in the group),
    # never by name from outside: otherwise anyone could make it theirs and have it dissolved.
    return None


def _unclaimable(g: Group) -> Reply:
    unit = f"{g.unit}的" if g.unit else ""
    return Reply(f"“{g.name}”还没有群主，不能在群外认领。请在该群里发送“报备”，"
                 f"或请{unit}单位管理员登记。这次没有改动任何内容。")


UNKNOWN_MEMBERS_HINT = ("我还看不到这个群的成员和消息，在此之前不会因长期没有工作消息提醒或解散它。"
                        "请在该群的群设置→群机器人中添加本机器人。")


def _end_date_refusal(ctx: Context, g: Group | None, data: dict) -> Reply | None:
    """受保护 = exempt from automatic warning and dissolution: such a group has no end date."""
    category = data["category"]
    protected_cat = category in ctx.settings.protected_categories
    wants_end = _is_temporary(ctx, category) or bool(data.get("expires"))
    if g is not None and g.protected and wants_end:
        return Reply(f"“{g.name}”是受保护群，不能设到期日（受保护群不会被自动提醒或解散）。"
                     f"如需改为临时群，请管理员先回复“取消保护 {g.name}”。")
    if protected_cat and data.get("expires"):
        return Reply(f"“{category}”是受保护类别，不能设到期日。请去掉到期日，或改登记为临时群。")
    return None


def _uncontrolled_hint(ctx: Context, g: Group) -> str:
    """A temporary group the bot cannot dissolve on its platform (an order to the owner instead):
    say so, and offer 建群 where the person has a platform on which the bot can create one."""
    from governance.capabilities import resolve
    from handlers.commands.create import USAGE, creating_platform

    if resolve(ctx.services.capabilities, g.platform, source=g.source).soft:
        return ""
    text = "机器人不能在平台上解散这个群，到期后会提醒您手动解散。"
    if creating_platform(ctx) is not None:
        text += f"以后的临时群可以让我来建，到期自动解散，例如：{USAGE}"
    return text


def _finish(ctx: Context, data: dict) -> Reply:
    from handlers.commands.lifecycle import PROTECTED_MEANS, request_protection

    g = _target_group(ctx, data)
    if isinstance(g, Reply):
        return g
    if g is not None and g.owner_id and not CHANGERS.allows(ctx.person, g):
        return CHANGERS.refusal(ctx, g)  # (an unowned group: _target_group decided who may claim it)
    refused = _end_date_refusal(ctx, g, data)
    if refused is not None:
        return refused
    if (g is not None and g.status in ("dissolving", "restoring") and not g.protected
            and data["category"] in ctx.settings.protected_categories):
        return Reply(f"“{g.name}”正在解散或恢复中，请先回复“恢复 {g.name}”，再登记为受保护类别。")
    new = g is None
    if new:
        g = repo.ensure_group(ctx.session, group_id=repo.new_group_id(data["name"], ctx.person.id, ctx.now),
                              platform="ledger", at=ctx.now, name=data["name"], source="chat")
    category = data["category"]
    g.name = data["name"]
    g.purpose = data.get("purpose")
    g.unit = data.get("unit")
    g.category = category
    wants_protection = category in ctx.settings.protected_categories and not g.protected
    g.temporary = _is_temporary(ctx, category) and not wants_protection and not g.protected
    g.expires_at = date.fromisoformat(data["expires"]) if g.temporary and data.get("expires") else None
    g.owner_id = g.owner_id or ctx.person.id
    g.registered_at = ctx.now
    g.registered_by = ctx.person.id
    g.updated_at = ctx.now
    if ctx.event.group_id == g.id:
        repo.add_members(ctx.session, g.id, [ctx.person.id], ctx.now)
    audit.record(ctx.session, actor=ctx.person.id, action="register", at=ctx.now, group_id=g.id,
                 reason=g.purpose, data={"name": g.name, "unit": g.unit, "category": category,
                                         "expires_at": g.expires_at, "protected": g.protected})
    requested = False
    if wants_protection:
        if ADMINISTRATORS.allows(ctx.person, g):  # an administrator (of the unit) registering grants it
            lifecycle.set_protected(ctx.session, g, True, ctx.now, actor=ctx.person.id)
        else:
            if g.protect_requested_at is None:  # asked once: registering again does not ask again
                request_protection(ctx, g)
            requested = True
    where = f"（{category}，{g.unit}）" if g.unit else f"（{category}）"
    hint = ""
    if not ctx.event.group_id and not repo.member_ids(ctx.session, g.id) and g.source == "chat":
        hint = UNKNOWN_MEMBERS_HINT
    if g.temporary:
        return Reply(f"已登记：{g.name}{where}，{fmt_date(g.expires_at, ctx.today)}到期。到期前3天提醒您；"
                     f"任务提前完成可回复“完成 {g.name}”。" + hint + _uncontrolled_hint(ctx, g))
    if g.protected:
        return Reply(f"已登记：{g.name}{where}，受保护群，{PROTECTED_MEANS}。" + hint)
    if requested:
        return Reply(f"已登记：{g.name}{where}。待单位管理员确认保护；确认前按普通群治理，"
                     f"如长期没有工作消息，我会先提醒您，不会直接解散。" + hint)
    return Reply(f"已登记：{g.name}{where}。如长期没有工作消息，我会先提醒您，不会直接解散。" + hint)


@command("报备", "登记", summary="登记一个工作群（也可只说“报备”，我逐项问）", intent="register", example="我要登记一个群",
         usage="报备 群名称 用途:… 单位:… 类别:临时群 到期:12月31日")
def register(ctx: Context, args: str) -> Reply:
    if "fields" in ctx.slots:
        positional, fields = [], dict(ctx.slots.get("fields") or {})
    else:
        positional, fields = split_fields(args, FIELD_KEYS)
    data: dict = {}
    if ctx.event.group_id:
        data["group_id"] = ctx.event.group_id
        g = ctx.session.get(Group, ctx.event.group_id)
        if g is not None and g.name and g.name != g.id:
            data["name"] = g.name
    if positional and "name" not in fields:
        fields["name"] = positional.pop(0)
    for word in positional:  # lenient: “报备 秋粮收购专班 临时群 12月31日”
        cat, rest = _category(ctx, word)
        if cat and "category" not in fields:
            fields["category"] = word
        elif "expires" not in fields:
            fields["expires"] = word
    if fields.get("unit"):  # the unit first: whose name it is depends on it
        fields = {"unit": fields["unit"], **fields}
    bad: tuple[str, Reply] | None = None
    for field in ("unit", "name", "purpose", "category", "expires"):
        if fields.get(field):
            refused = _take(ctx, data, field, fields[field])
            if refused is not None and field == "name" and "已由" in refused.text:
                return refused  # someone else's group: refused at once, nothing asked
            if refused is not None and bad is None:
                bad = (field, refused)  # keep the good fields, ask only for this one
    if bad is not None:
        return _advance(ctx, data, bad[1], bad[0])
    return _advance(ctx, data)


_DIALOGUE_KEYS = ("step", "what", "expects", "question")


@conversation("register")
def register_next(ctx: Context, conv: Conversation) -> Reply:
    data = {k: v for k, v in conv.data.items() if k not in _DIALOGUE_KEYS}
    step = conv.data.get("step", "name")
    refused = _take(ctx, data, step, ctx.text)
    if refused is not None:
        if "已由" in refused.text:
            dialogue.close(ctx)
            return refused
        return _advance(ctx, data, refused, step)
    return _advance(ctx, data)
