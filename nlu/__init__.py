"""Natural-language commands for 群治: a deterministic, offline parser (no hosted model).

Pure: no I/O, no database, ``today`` is passed in. It may import ``governance`` (dates, text,
worktime, ritual) and third-party libraries (jieba, zhconv, rapidfuzz, lunar_python) only.

The API the handlers wire in (``handlers/dispatch.py`` and the commands)::

    from nlu import parse, resolve, Candidate, renewal_base, say_date

    p = parse(event.text, today=ctx.today, bot_names=(settings.bot_name,))   # Parse | None
    if p is None:          # not a command (收到, 好的, work text): same as registry.match() → None
        ...                # hint or silence exactly as today (wants_hint)
    p.intent               # register renew done keep restore merge protect unprotect useless report
                           # confirm_order undo mine dashboard help greet cancel confirm continue
                           # choose pulse
    p.slots                # group, target (merge), period (nlu.periods.Period), reason, text (report),
                           # fields + name (register), number (choose), value (pulse 1..3)
    p.this_group           # no group named (or 这个群/本群): the group the message was sent in
    p.weak                 # only a weak phrase matched (用到, 有用): stay silent if its group is unknown
    p.consequential        # done / merge / protect / unprotect / confirm_order
    p.rest                 # what no slot consumed
    p.slots.get("period_error")  # a date recognised but impossible (2月30日): reply with it
    warm_up()              # at start-up: build the grammar, load the dictionary (~1 s) before traffic

    # group references: candidates are the groups this person may see, read once from the
    # database as plain records; relation is own / member / admin (or a frozenset of them)
    cands = [Candidate(g.id, g.name, g.unit, rel(g)) for g in visible_groups(ctx.person)]
    r = resolve(p.group, cands, intent=p.intent, context=p.text)             # Resolution
    r.outcome              # "one" | "several" | "none"
    r.group                # Candidate when one; r.group.label() = 秋粮收购专班（城关镇）, echo it
    r.needs_confirmation   # fuzzy match on a consequential step: ask (r.prompt()), act on 确认
    r.choices              # several: numbered choice, r.prompt() = "有两个群像“征兵群”，回复序号：…";
                           # keep the ids in the Conversation and answer the next "choose" intent
    r.refused              # none, because the exact group is one the person may not act on
    r.matches              # none: the closest three of their own groups (in r.prompt())

    # renewals: a span adds to the current expiry when that is in the future (today's rule)
    new = p.slots["period"].end(ctx.today, base=renewal_base(g.expires_at, ctx.today))
    reply = f"已把“{label}”延至{say_date(new)}。"

    # registration: split_fields replaces handlers.text.split_fields (same signature)
    from nlu import split_fields, parse_period    # parse_period replaces parse_expiry

Wiring sketch for dispatch: ``handlers.classify.resolve_command`` is the one place a text becomes a
command (today ``registry.match(text)``); replace its body by ``parse`` and map intents to the
existing commands (``INTENT_TO_COMMAND = {"renew": renew, "done": done, …}``), passing the
resolved group instead of re-splitting ``args``; a bare number is ``choose`` (or the pulse
answer when a pulse was asked and no choice is pending); ``confirm``/``cancel``/``choose`` are
the continuations of a pending Conversation. Anonymous intents (useless, report, pulse) must
still be recognised before anything is recorded: ``parse`` is pure, so ``handlers.classify.classify``
(which runs before anything is recorded and decides anonymity from the command found) can call it.
"""
from nlu.fields import split_fields
from nlu.grammar import Parse, may_be_command, parse, warm_up
from nlu.periods import DateParseError, Period, parse_period, renewal_base, say_date
from nlu.resolve import ADMIN, MEMBER, OWN, Candidate, Resolution, may_act, resolve

ANONYMOUS_INTENTS = frozenset({"useless", "report", "pulse"})

__all__ = [
    "parse", "Parse", "may_be_command", "resolve", "Resolution", "Candidate", "may_act", "OWN", "MEMBER", "ADMIN",
    "Period", "parse_period", "renewal_base", "say_date", "DateParseError", "split_fields", "ANONYMOUS_INTENTS",
    "warm_up",
]
