"""Which group(s) a command acts on: the parse's references resolved forgivingly (``nlu.resolve``)
against the groups the person may act on (own, member of, administers).

One clear candidate: act, echoing the full name (:func:`shown`). Several: a numbered choice.
None: say so and offer the closest three of the person's own groups; a group named exactly
that the person may not act on gets the command's refusal (naming the owner), never a
look-alike. A fuzzy match on a step with consequences for others (完成, 合并, 保护) is acted on
only after 确认 or the number. A missing reference is asked for (``续期`` alone in a direct chat),
said inside a group it is that group. Every question goes through ``handlers.dialogue``.
"""
from __future__ import annotations

from governance.events import Reply
from handlers.context import Context
from handlers.registry import Target
from nlu import Candidate, resolve as nlu_resolve
from storage import repo
from storage.models import Group

#: what a confirmation of a fuzzy match says will happen, per intent
CONFIRM_TAIL = {
    "done": "回复“确认”，我会先通知成员，{grace}天后解散，{restore}天内可恢复。",
    "merge": "回复“确认”后安排合并。",
}
ASK_GROUP = {"target": "合并到哪个群？请回复群名。"}


def candidates(ctx: Context) -> list[Candidate]:
    return [Candidate(gid, name, unit, rel) for gid, name, unit, rel in repo.visible_groups(ctx.session, ctx.person)]


def shown(ctx: Context, g: Group) -> str:
    """The group's name as a reply echoes it: the full name with its unit when the person named
    it loosely (秋粮群 → 秋粮收购专班（城关镇）), else as written."""
    if g.id in ctx.settled_fuzzy:
        return Candidate(g.id, g.name or g.id, g.unit).label()
    return g.name


def _intent(ctx: Context) -> str:
    return ctx.command.intent if ctx.command is not None else ""


def _refusal(ctx: Context, g: Group) -> Reply:
    cmd = ctx.command
    if cmd is not None and cmd.refusal:
        return Reply(cmd.refusal)
    if cmd is not None and cmd.permission is not None:
        return cmd.permission.refusal(ctx, g)
    return Reply(f"“{g.name}”不是您能操作的群。")


def _several_form(r) -> str:
    lines = "\n".join(f"· {c.label()}" for c in r.choices)
    return f"有{len(r.choices)}个群像“{r.ref}”，请写全群名再发一次：\n{lines}"


def _allowed(ctx: Context, g: Group) -> bool:
    cmd = ctx.command
    return cmd is None or cmd.permission is None or cmd.permission.allows(ctx.person, g)


def _one(ctx: Context, slot: str, *, here_ok: bool, args: str = "") -> Group | Reply | tuple[Group, bool]:
    from handlers import dialogue

    if slot in ctx.settled:
        g = ctx.session.get(Group, ctx.settled[slot])
        return g if g is not None else Reply("这个群已经不在了，什么都没有改。")
    ref = (ctx.slots.get(slot) or "").strip()
    if not ref and slot == "group" and not ctx.event.group_id and args.strip() and not ctx.in_dialogue:
        ref = args.strip()  # 恢复 微信群: a name that is all suffix is still a name
    if not ref:
        if slot == "group" and ctx.event.group_id:
            g = ctx.session.get(Group, ctx.event.group_id)
            if g is not None:
                return g
        name = ctx.command.name if ctx.command is not None else ""
        example = ctx.command.example or ctx.command.usage if ctx.command is not None else ""
        return dialogue.ask_pending(ctx, slot, ASK_GROUP.get(slot) or f"{name}哪个群？请回复群名。",
                                    form=f"请写上群名称，例如“{example}”。")
    exact = ctx.session.get(Group, ref)  # a group id (from a ledger or a card) is exact
    if exact is not None:
        return exact if _allowed(ctx, exact) else _refusal(ctx, exact)
    pool = candidates(ctx)
    r = nlu_resolve(ref, pool, intent=_intent(ctx), context=ctx.parse.text if ctx.parse is not None else ref)
    if r.outcome == "one":
        g = ctx.session.get(Group, r.group.id)
        return (g, not r.exact or r.needs_confirmation)
    if r.outcome == "several":
        return dialogue.ask_pending(ctx, f"choice:{slot}", r.prompt(), choices=tuple(c.id for c in r.choices),
                                    form=_several_form(r))
    if r.refused is not None:
        g = ctx.session.get(Group, r.refused.id)
        if g is not None:
            return _refusal(ctx, g)
    named = repo.find_groups(ctx.session, ref)  # named exactly, outside their groups
    if len(named) == 1 and _allowed(ctx, named[0]):
        return named[0]  # e.g. a vote by someone seen writing in it (the command checks the rest)
    for g in named:  # not theirs: who may act
        if not _allowed(ctx, g):
            return _refusal(ctx, g)
    return Reply(r.prompt())


def groups_of(ctx: Context, slots: tuple[str, ...], *, here_ok: bool = False, args: str = "") -> Target | Reply:
    """Resolve each of ``slots`` in turn; ask for what is missing, ambiguous or needs confirming."""
    from handlers import dialogue

    found: list[Group] = []
    fuzzy: list[Group] = []
    for slot in slots:
        g = _one(ctx, slot, here_ok=here_ok, args=args)
        if isinstance(g, Reply):
            return g
        if isinstance(g, tuple):
            g, loose = g
            if loose:
                fuzzy.append(g)
                ctx.settled_fuzzy.add(g.id)
        ctx.settled[slot] = g.id
        found.append(g)
    cmd = ctx.command
    if fuzzy and not ctx.confirmed and cmd is not None and cmd.intent in CONSEQUENTIAL:
        names = "”和“".join(shown(ctx, g) for g in fuzzy)
        tail = CONFIRM_TAIL.get(cmd.intent, "回复“确认”继续，回复“取消”作罢。").format(
            grace=ctx.settings.grace_days, restore=ctx.settings.restore_days)
        return dialogue.ask_pending(ctx, "confirm", f"是“{names}”吗？{tail}",
                                    form=f"请写全群名再发一次（{names}）。")
    return Target(tuple(found), "")


CONSEQUENTIAL = frozenset({"done", "merge", "protect", "unprotect", "confirm_order", "confirm_protect"})


def resolve(ctx: Context, ref: str) -> Group | Reply:
    """The one group ``ref`` names for the running command (or the group the message was sent in)."""
    if ref:
        ctx.slots = {**ctx.slots, "group": ref}
    t = groups_of(ctx, ("group",), here_ok=True)
    return t if isinstance(t, Reply) else t.groups[0]


def named_group(ctx: Context, args: str) -> Target | Reply:
    """``<群>``: the group named (an unknown name is an error, never the current group: a typo
    must not mark the wrong group done); named none inside a group: that group. A ``target``."""
    return groups_of(ctx, ("group",), args=args)


def named_group_or_here(ctx: Context, args: str) -> Target | Reply:
    """As :func:`named_group` (``续期 30天`` said inside a group: that group). A ``target``."""
    return groups_of(ctx, ("group",), here_ok=True, args=args)


def merged_pair(ctx: Context, args: str) -> Target | Reply:
    """合并's target: the group merged away (``group``) and the one kept (``target``)."""
    if not ctx.slots.get("group") and "group" not in ctx.settled:
        return Reply("请这样写：“合并 群A 到 群B”，群A的成员将改用群B，群A解散。")
    return groups_of(ctx, ("group", "target"))
