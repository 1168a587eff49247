"""Anonymous, one-tap feedback: the pulse (本周工作群负担 轻/适中/重), 这个群没用 and 反映.

Nothing here stores who answered: see ``storage.feedback`` for the pseudonyms. The group
@-mention of 这个群没用 must also be kept out of the ``messages`` table by dispatch: the commands
are declared ``anonymous`` (``handlers.classify`` reads it before anything is recorded).
"""
from __future__ import annotations

import re

from governance import labels
from handlers.context import Context
from governance.events import Reply
from handlers.groups import resolve
from handlers import dialogue
from handlers.registry import command, conversation
from storage.models import Conversation
from storage import feedback
from storage.models import Group
from storage.outbox import enqueue

USELESS_WORDS = ("这个群没用", "这个群没有用", "此群没用", "该群没用")
REPORT_WORDS = ("反映",)
PULSE_WORDS = {**{str(v): v for v in labels.PULSE_ANSWERS}, **{w: v for v, w in labels.PULSE_ANSWERS.items()}}
RECEIVED_BUTTON = {"replace_name": "已收到，谢谢（匿名）"}
PULSE_AGAIN_BUTTON = {"replace_name": "本周已回答过，未重复记录"}
VOTED_BUTTON = {"replace_name": "已反映过，未重复记录"}
NOT_MEMBER_BUTTON = {"replace_name": "仅限群成员，未记录"}
NOT_COUNTED_BUTTON = {"replace_name": "此群已不在使用中，未记录"}


# --- pulse -----------------------------------------------------------------------------------
def _pulse_value(key: str) -> int | None:
    m = re.search(r"([123])\s*$", key or "")
    return int(m.group(1)) if m else None


def _record(ctx: Context, value: int) -> bool:
    return feedback.record_pulse(ctx.session, secret=ctx.settings.pseudonym_secret, person=ctx.person,
                                 value=value, local_day=ctx.today, tz=ctx.settings.tz)


def _acknowledge_card(ctx: Context, card: dict = RECEIVED_BUTTON) -> None:
    """Update the tapped card to show the tap counted (one tap is all it costs), or why it did not.
    No user id and no answer in the update: the outbox must not link a person to a value."""
    code = ctx.event.data.get("response_code")
    if code:
        channel = ctx.event.data.get("card_update_channel") or "card_update"  # the platform's (Feishu: feishu_card)
        enqueue(ctx.session, channel=channel, recipient=str(code)[:128], kind="card_update",
                payload={"response_code": code, "card": card}, at=feedback.day_start(ctx.now),  # no finer time
                dedupe_key=f"card_update:{code}"[:200])


@conversation("card:pulse")
def pulse_clicked(ctx: Context, _conv) -> None:
    """One tap: record the answer, then update the card so the tap visibly counted."""
    value = _pulse_value(str(ctx.event.data.get("event_key", "")))
    if value is None:
        return None
    _acknowledge_card(ctx, RECEIVED_BUTTON if _record(ctx, value) else PULSE_AGAIN_BUTTON)
    return None


@command(*PULSE_WORDS, in_group=False, private_reply="", anonymous=True, intent="pulse")  # no summary: not in 帮助
def pulse_text(ctx: Context, args: str):
    """Text fallback: "1"/"2"/"3" (or 轻/适中/重) within a few days of being asked; silent in a group.

    A bare number answers the person's pending numbered choice first (``handlers.dialogue``):
    then no pulse is recorded, so handling the choice here links nobody to an answer."""
    conv = ctx.session.get(Conversation, ctx.person.id) if ctx.text.strip().isdigit() else None
    if conv is not None and (conv.data or {}).get("expects") in ("choice", "confirm"):
        ctx.command = None
        return dialogue.changing_groups(ctx, lambda: dialogue.answer(ctx, conv))
    value = ctx.slots.get("value") or ctx.slots.get("number") or PULSE_WORDS.get(ctx.text)
    if not value or not feedback.recently_asked(ctx.session, ctx.person.id, ctx.now):
        return Reply("没听懂。可以说“帮助”看看我能做什么。")
    if not _record(ctx, value):
        return Reply("您本周已经回答过了，这次没有重复记录。")
    return Reply("收到，谢谢。")


# --- this group is useless ---------------------------------------------------------------------
def _may_vote(ctx: Context, g: Group) -> bool:
    """Only members vote: said inside the group (the platform vouches for the sender), on its member
    list, or, for a group whose member list is unknown, seen writing in it."""
    if ctx.event.group_id == g.id:
        return True
    from storage import repo

    members = repo.member_ids(ctx.session, g.id)
    if members:
        return ctx.person.id in members
    return feedback.seen_in_group(ctx.session, g.id, ctx.person.id)


def _vote(ctx: Context, g: Group) -> tuple[dict, Reply]:
    """The vote, and how the tapped card and the reply say whether it counted."""
    if g.status not in ("active", "warned"):
        return NOT_COUNTED_BUTTON, Reply(f"“{g.name}”已不在使用中，不用再反映了，这次未记录。")
    if not _may_vote(ctx, g):
        return NOT_MEMBER_BUTTON, Reply(f"只有“{g.name}”的成员可以反映这个群没用，这次未记录。")
    r = feedback.record_useless_vote(ctx.session, secret=ctx.settings.pseudonym_secret, group=g,
                                     person_id=ctx.person.id, now=ctx.now, local_day=ctx.today,
                                     votes_min=ctx.settings.useless_votes_min, tz=ctx.settings.tz)
    if not r.new:
        return VOTED_BUTTON, Reply("您已经反映过这个群，不必重复，这次未重复记录。")
    tip = "" if ctx.event.is_direct else "（以后可以私聊我发送，更不显眼。）"
    return RECEIVED_BUTTON, Reply("已匿名记录，群主不会看到是谁反映的。" + tip)


@command(*USELESS_WORDS, summary="匿名反映某个群没用，不记录身份", usage="这个群没用 群名", anonymous=True,
         intent="useless", example="招商引资信息群没什么用")
def useless(ctx: Context, args: str) -> Reply:
    g = resolve(ctx, "")
    if isinstance(g, Reply):
        return g
    return _vote(ctx, g)[1]


@conversation("card:useless")
def useless_clicked(ctx: Context, _conv) -> None:
    key = str(ctx.event.data.get("event_key", ""))
    gid = ctx.event.data.get("group_id") or (key.split(":", 1)[1] if key.startswith("useless:") else None)
    g = ctx.session.get(Group, gid) if gid else None
    if g is None:
        return None
    card, _reply = _vote(ctx, g)
    # The tapped card says whether the tap counted and why not; no message: a reply would be queued
    # to the sender (aibot) and name who tried to vote on which group.
    _acknowledge_card(ctx, card)
    return None


# --- formalism report --------------------------------------------------------------------------
@command(*REPORT_WORDS, summary="匿名反映形式主义要求，不记录身份", usage="反映 内容", anonymous=True, intent="report",
         in_group=False, private_reply="请私聊我发送“反映 内容”，在群里说会暴露身份。")
def report(ctx: Context, args: str) -> Reply:
    text = (ctx.slots.get("text") or args or "").strip()
    if len(text) < 4:
        return Reply("请写上具体情况，例如“反映 村里要求每天在群里上传入户走访照片”。")
    feedback.record_formalism_report(ctx.session, text=text[:2000], now=ctx.now, local_day=ctx.today)
    return Reply("已匿名转给纪委监委，不记录您的身份。")
