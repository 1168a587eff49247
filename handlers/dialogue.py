"""Pending questions: one per person (the ``conversations`` row), answered by the continuation
registered for its intent (``handlers.registry.conversation``).

* :func:`ask` opens (or replaces, saying so) the person's question; every question the bot asks
  goes through it: 报备 field by field, a missing slot (``续期 秋粮群`` without a period), a
  numbered choice between look-alike groups, a confirmation of a fuzzy match on a step with
  consequences (完成, 合并, 保护). An anonymous command never asks (it answers with the form).
* :func:`takes` decides whether a message is the open question's answer or another command
  (a group named 我的群 can be registered; ``续期 秋粮群 30天`` during a 报备 is a command).
* :func:`answer` runs the continuation; 取消 and 继续 are answered here for every dialogue.
* :func:`reminder`: the one line an unrelated command's reply ends with while a dialogue is open.

The continuation ``command`` (below) is the generic one: a command waiting for a slot, a choice
or a confirmation; it re-runs the command with what was remembered plus the answer.
"""
from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from sqlalchemy.orm import Session

from governance.dates import DateParseError
from governance.events import Reply
from handlers import registry
from handlers.context import Context
from nlu import Period, parse_period
from storage import repo
from storage.models import Conversation

log = logging.getLogger("qunzhi.handlers")

CONVERSATION_TTL = timedelta(hours=12)
#: answers to any question, never commands while one is open
ANSWERS = frozenset({"cancel", "continue", "confirm", "choose", "pulse"})
#: always a command, even while a free-text answer is awaited
COMMANDS_ALWAYS = frozenset({"help", "dashboard", "undo", "register", "greet", "create", "report", "useless"})
SLOT_KEYS = ("group", "target", "period", "reason", "text", "fields")
DECLINE = ("不是", "不对", "错了", "不是这个", "都不是", "否", "不")


def open_conversation(session: Session, person_id: str, now) -> Conversation | None:
    """The person's open question, or None (an abandoned one, older than the TTL, is deleted:
    it must not swallow tomorrow's 好的 as an answer)."""
    conv = session.get(Conversation, person_id)
    if conv is not None and conv.updated_at is not None and _aware(conv.updated_at) < now - CONVERSATION_TTL:
        session.delete(conv)
        session.flush()
        return None
    return conv


def _aware(dt):
    from datetime import timezone

    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def ask(ctx: Context, intent: str, data: dict[str, Any], question: str, *, what: str,
        expects: str = "text", form: str | None = None) -> Reply:
    """Ask the person ``question`` and remember ``data`` for the continuation of ``intent``.

    ``what`` names the dialogue in reminders (报备, 续期 …); ``expects``: ``text`` (a free answer),
    ``period``, ``choice`` or ``confirm`` (see :func:`takes`). An anonymous command never opens a
    dialogue: it gets ``form`` (how to say it in one message) instead."""
    if ctx.command is not None and ctx.command.anonymous:
        return Reply(form or question)
    conv = ctx.session.get(Conversation, ctx.person.id)
    replaced = ""
    if conv is not None and not ctx.in_dialogue:
        old = (conv.data or {}).get("what") or "问题"
        replaced = f"\n（之前没完成的{old}已作废。）"
    stored = {**data, "what": what, "expects": expects, "question": question}
    if conv is None:
        conv = Conversation(person_id=ctx.person.id, intent=intent, data=stored, updated_at=ctx.now)
        ctx.session.add(conv)
    else:
        conv.intent, conv.data, conv.updated_at = intent, stored, ctx.now
    return Reply(question + replaced)


def close(ctx: Context) -> None:
    conv = ctx.session.get(Conversation, ctx.person.id)
    if conv is not None:
        ctx.session.delete(conv)
        ctx.session.flush()


def _has_slots(p) -> bool:
    for k in SLOT_KEYS:
        v = p.slots.get(k)
        if v:
            return True
    return False


def takes(ctx: Context, conv: Conversation, p) -> bool:
    """Whether the message (parse ``p``, text ``ctx.text``) answers the open question.

    Answers: no command at all; 取消/继续/确认/a number; the pending command said again (its
    slots are merged: ``延期到月底`` after ``续期 秋粮群``); a period where a period is awaited; a
    free text (a name, a purpose: 我的群 too) unless it is clearly a command of its own (it
    names a group, a period or a text, or is 帮助/看板/撤销/报备 …)."""
    data = conv.data or {}
    custom = registry.takes_for(conv.intent)
    if custom is not None:
        return bool(custom(conv, p, ctx.text))
    if p is None or p.intent in ANSWERS:
        return True
    if data.get("command") and p.intent == data.get("command"):
        return True
    expects = data.get("expects", "text")
    if expects == "period" and _period_answer(ctx, ctx.text) is not None:
        return True
    if expects == "text":
        return p.intent not in COMMANDS_ALWAYS and not _has_slots(p)
    return False


def _period_answer(ctx: Context, text: str) -> date | None:
    try:
        return parse_period(text, ctx.today)
    except DateParseError:
        return None


def answer(ctx: Context, conv: Conversation) -> list[Reply] | Reply | None:
    """The open question's answer: 取消 and 继续 for every dialogue, else its continuation."""
    p = ctx.parse
    data = conv.data or {}
    what = data.get("what") or "操作"
    if p is not None and p.intent == "cancel":
        close(ctx)
        return Reply(f"好的，已取消{what}，什么都没有改。")
    if p is not None and p.intent == "continue":
        conv.updated_at = ctx.now
        return Reply(data.get("question") or "请接着回答。")
    cont = registry.continuation(conv.intent)
    if cont is None:
        log.warning("conversation %s of %s has no continuation: closed", conv.intent, ctx.person.id)
        close(ctx)
        return None
    ctx.in_dialogue = True
    return cont(ctx, conv)


def reminder(conv: Conversation) -> str:
    """The one line that reminds of an open dialogue after an unrelated command's reply."""
    data = conv.data or {}
    what = data.get("what") or "问题"
    if data.get("expects") in ("choice", "confirm"):
        return f"您还有一个{what}等您回复，回复“继续”接着处理。"
    return f"您还有一个{what}没填完，回复“继续”接着填。"


# --- the generic continuation: a command waiting for a slot, a choice or a confirmation ----------
def period_to_data(p: Period | None) -> dict | None:
    if p is None:
        return None
    return {"text": p.text, "days": p.days, "months": p.months, "on": p.on.isoformat() if p.on else None}


def period_from_data(d: dict | None) -> Period | None:
    if not d:
        return None
    return Period(d.get("text", ""), days=d.get("days", 0), months=d.get("months", 0),
                  on=date.fromisoformat(d["on"]) if d.get("on") else None)


def slots_to_data(slots: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in slots.items() if k != "period" and isinstance(v, (str, int, dict, type(None)))}
    if slots.get("period") is not None:
        out["period"] = period_to_data(slots["period"])
    return out


def slots_from_data(d: dict[str, Any]) -> dict[str, Any]:
    out = dict(d)
    if "period" in out:
        out["period"] = period_from_data(out["period"])
    return out


def ask_pending(ctx: Context, need: str, question: str, *, choices: tuple[str, ...] = (),
                form: str | None = None) -> Reply:
    """The running command waits for ``need`` (a slot name, ``choice:<slot>`` or ``confirm``):
    remember the command, its slots and the groups already settled, and ask."""
    cmd = ctx.command
    data = {"command": cmd.intent, "need": need, "slots": slots_to_data(ctx.slots), "settled": dict(ctx.settled),
            "choices": list(choices), "confirmed": ctx.confirmed, "fuzzy": sorted(ctx.settled_fuzzy)}
    expects = "choice" if need.startswith("choice:") else "confirm" if need == "confirm" else \
        "period" if need == "period" else "text"
    return ask(ctx, "command", data, question, what=f"“{cmd.name}”", expects=expects, form=form)


def _merge_answer_slots(ctx: Context, slots: dict[str, Any], need: str) -> dict[str, Any]:
    """The answer's own slots (``延期到月底`` said again) and the awaited slot from its text."""
    p = ctx.parse
    if p is not None and p.intent == ctx.command.intent:
        for k, v in p.slots.items():
            if v is not None and not (k == "group" and slots.get("group")):
                slots[k] = v
        return slots
    if need == "period":
        from nlu.normalize import clean
        from nlu.periods import find_period

        try:
            found = find_period(clean(ctx.text), ctx.today)
        except DateParseError as e:
            slots["period_error"] = str(e)
            return slots
        if found is not None:
            slots["period"] = found.period
        else:
            slots["period_text"] = ctx.text
    elif need in ("group", "target"):
        slots[need] = ctx.text.strip()
        ctx.settled.pop(need, None)
    else:
        slots[need] = ctx.text.strip()
    return slots


@registry.conversation("command")
def pending_command(ctx: Context, conv: Conversation):
    data = dict(conv.data or {})
    cmd = registry.by_intent(data.get("command", ""))
    close(ctx)
    if cmd is None:
        return Reply("刚才的操作已失效，请重新发送。")
    ctx.command = cmd
    need = data.get("need", "")
    ctx.settled = dict(data.get("settled") or {})
    ctx.confirmed = bool(data.get("confirmed"))
    ctx.settled_fuzzy = set(data.get("fuzzy") or ())
    slots = slots_from_data(data.get("slots") or {})
    p = ctx.parse
    if need.startswith("choice:"):
        slot = need.split(":", 1)[1]
        choices = data.get("choices") or []
        n = _number(ctx)
        if n is None:
            if ctx.text.strip() in DECLINE:
                return Reply("好的，没有操作。")
            # a name instead of a number: resolve it again
            slots[slot] = ctx.text.strip()
        elif not 1 <= n <= len(choices):
            ctx.in_dialogue = True
            return ask_pending_again(ctx, conv, data, f"请回复1到{len(choices)}之间的序号。")
        else:
            ctx.settled[slot] = choices[n - 1]
            ctx.settled_fuzzy.add(choices[n - 1])  # echo the full name of the one chosen
            ctx.confirmed = True  # choosing by number is the confirmation
    elif need == "confirm":
        if p is not None and p.intent in ("confirm",) or _number(ctx) == 1:
            ctx.confirmed = True
        else:
            return Reply("好的，没有操作。")
    else:
        slots = _merge_answer_slots(ctx, slots, need)
    ctx.slots = slots
    return cmd.run(ctx, "")


def ask_pending_again(ctx: Context, conv: Conversation, data: dict, prefix: str) -> Reply:
    stored = {k: v for k, v in data.items() if k not in ("what", "expects", "question")}
    return ask(ctx, "command", stored, prefix + "\n" + data.get("question", ""), what=data.get("what", "问题"),
               expects=data.get("expects", "text"))


def _number(ctx: Context) -> int | None:
    p = ctx.parse
    if p is not None and p.intent == "choose":
        return p.slots.get("number")
    if p is not None and p.intent == "pulse" and ctx.text.strip().isdigit():
        return int(ctx.text.strip())
    t = ctx.text.strip()
    if p is not None and p.intent == "confirm":
        tail = p.rest.strip()
        return int(tail) if tail.isdigit() else None
    return int(t) if t.isdigit() else None


def changing_groups(ctx: Context, run) -> list[Reply]:
    """Run a command; then, for the groups it changed, withdraw or correct notices whose premise
    ended and refresh those groups' per-group findings (``storage.lifecycle.groups_changed``)."""
    from storage.lifecycle import groups_changed

    with repo.track_groups(ctx.session) as touched:
        replies = as_list(run())
    if touched:
        groups_changed(ctx.session, touched, ctx.now, ctx.settings, actor=ctx.person.id)
    return replies


def as_list(result) -> list[Reply]:
    if result is None:
        return []
    if isinstance(result, Reply):
        return [result]
    return list(result)
