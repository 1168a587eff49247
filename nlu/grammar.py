"""The parser: the intent table of :mod:`nlu.intents` applied to a normalised message.

1. A cheap pre-filter (character bigrams of every phrase, simplified and traditional) drops
   messages that cannot be commands (收到, 好的, work text) before any normalisation.
2. The text is folded (:func:`nlu.normalize.clean`) and segmented with the parser's own jieba
   tokenizer (the shared one that the ritual classifier and name similarity use is untouched).
3. Phrases are found leftmost-longest; a phrase inside a name (人员报备群, 灾后恢复重建专班) is
   no verb: a verb stands next to a boundary (start, punctuation, a filler such as 我要/把/那个,
   the end of a group suffix 群/专班, a period, or a particle 了/吧).
4. The lowest tier wins (an action over 你好), then the leftmost phrase; slots are what is
   left: the group reference, a merge target, a period, a reason or free text.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache
from typing import Any

import zhconv

from governance.dates import DateParseError
from nlu.fields import split_fields
from nlu.intents import (ALONE_LEADS, BY_NAME, FILLERS, GROUP_SUFFIXES, INTENTS, MERGE_UNDIRECTED, NOMINAL_AFTER,
                         NON_GROUP_NOUNS, THIS_GROUP, Intent)
from nlu.normalize import STICKER, clean, strip_mentions
from nlu.periods import Found, Period, find_period

GAP = "…"
_GAP_RE = r"[^,;。!?]{0,12}"
_HARD = ",;。!?:"
_PARTICLES = set("了吧啊呀呢哦嘛啦呗咯喽哈")
ALONE_MAX = 8  # characters: an "alone" phrase plus fillers
CHAT_MAX = 6  # characters of other content a greeting, 帮助 or 算了 may come with
_FW_Q = str.maketrans({"？": "?", "！": "!"})
# A message to the bot that is work text, not a command: it addresses everyone, or reports numbers.
_WORK_OPENERS = re.compile(r"^(?:请大家|请各|各位|大家|通知|各村|各单位|各部门|请全体|全体|特此)")
_WORK_FIGURES = re.compile(r"\d+(?:\.\d+)?\s*(?:户|人|条|份|次|元|万|亩|吨|斤|%|名|家|个村|公里|场|项|件|张)")


@dataclass(frozen=True)
class Phrase:
    text: str
    intent: str
    weak: bool = False
    reason: bool = False  # the phrase also states the reason (还要用)
    alone: bool = False
    raw: str = field(default="", compare=False)  # as written in the table (妳好 folds to 你好)
    strict: bool = False  # weak, and counts only with a group suffix (改到: 会议改到明天 is no command)


@dataclass(frozen=True)
class Hit:
    start: int
    end: int
    phrase: Phrase
    parts: tuple[tuple[int, int], ...] = ()  # the spans it consumes (a gap is not consumed)

    @property
    def spans(self) -> tuple[tuple[int, int], ...]:
        return self.parts or ((self.start, self.end),)

    @property
    def intent(self) -> str:
        return self.phrase.intent


@dataclass(frozen=True)
class Parse:
    """What a message asks for.

    ``slots``: ``group`` (reference as written, or None), ``target`` (merge), ``period``
    (:class:`nlu.periods.Period`), ``reason``, ``text`` (report), ``fields`` (register: name,
    purpose, unit, category, expires), ``value`` (pulse 1..3), ``number`` (choose).
    ``this_group``: the message says 这个群/本群 (or names no group): the group it was sent in.
    ``rest``: what no slot consumed. ``weak``: only a weak phrase matched (用到, 有用): when its
    group does not resolve, stay silent rather than answer."""

    intent: str
    slots: dict[str, Any]
    text: str
    verb: str = ""
    rest: str = ""
    this_group: bool = False
    weak: bool = False
    consequential: bool = False
    spans: tuple[tuple[int, int, str], ...] = field(default=())

    @property
    def group(self) -> str | None:
        return self.slots.get("group")


# --- the compiled grammar ------------------------------------------------------------------------
@dataclass
class _Grammar:
    literal: dict[str, Phrase]
    gapped: list[tuple[re.Pattern, Phrase]]
    by_first: dict[str, tuple[str, ...]]  # literal phrases by first character, longest first
    alone: dict[str, Phrase]
    first_chars: frozenset[str]
    bigrams: frozenset[str]
    singles: frozenset[str]
    alone_chars: frozenset[str]
    short_bigrams: frozenset[str]
    words: tuple[str, ...]


def _phrases(intent: Intent) -> list[Phrase]:
    out = []
    for column, reason, alone in ((intent.verbs, False, False), (intent.reason_verbs, True, False),
                                  (intent.alone, False, True)):
        for raw in column.split():
            weak = raw.startswith("~")
            strict = raw.startswith("~~")
            text = GAP.join(clean(piece) or piece for piece in raw.lstrip("~").split(GAP))
            out.append(Phrase(text, intent.name, weak=weak, reason=reason, alone=alone, raw=raw.lstrip("~"),
                              strict=strict))
    return out


def _variants(text: str) -> set[str]:
    out = {text}
    for loc in ("zh-hant", "zh-tw", "zh-hk"):
        out.add(zhconv.convert(text, loc))
    return out


@lru_cache(maxsize=1)
def grammar() -> _Grammar:
    literal: dict[str, Phrase] = {}
    gapped: list[tuple[re.Pattern, Phrase]] = []
    alone: dict[str, Phrase] = {}
    pieces: list[str] = []  # what the pre-filter looks for
    short_pieces: list[str] = []  # ... and in short texts only (greetings)
    alone_raw: list[str] = []
    for intent in INTENTS:
        for p in _phrases(intent):
            if p.alone:
                alone.setdefault(p.text, p)
                alone_raw.append(p.raw)
                continue
            if GAP in p.text:
                gapped.append((re.compile(_GAP_RE.join("(" + re.escape(x) + ")" for x in p.text.split(GAP))), p))
                pieces.append(max(p.text.split(GAP), key=len))
                continue
            (pieces if intent.tier < 4 else short_pieces).extend({p.text, p.raw})
            if p.text in literal:
                if literal[p.text].intent != p.intent:
                    raise ValueError(f"phrase {p.text!r} is in {literal[p.text].intent} and {p.intent}")
                continue
            literal[p.text] = p
    by_first: dict[str, list[str]] = {}
    for text in sorted(literal, key=len, reverse=True):
        by_first.setdefault(text[0], []).append(text)
    alone_chars = set("123456789？１２３４５６７８９")
    short_only = (list(alone) + alone_raw + short_pieces
                  + list(CHOOSE_WORDS) + list(_PARTICLES) + list(ALONE_LEADS))
    for a in short_only:
        for v in _variants(a):
            alone_chars.update(v.lower())
    first, bigrams, singles = set(), set(), set()
    short_bigrams = set()
    for piece in short_pieces:
        for v in _variants(piece):
            short_bigrams.add(v.lower()[:2])
    for piece in pieces:
        for v in _variants(piece):
            v = v.lower()
            first.add(v[0])
            if len(v) >= 2:
                bigrams.add(v[:2])
            else:
                singles.add(v)
    words = tuple(sorted({p for p in literal if len(p) >= 2} | set(GROUP_SUFFIXES)
                         | {w for w in FILLERS if len(w) >= 2}))
    return _Grammar(literal, gapped, {k: tuple(v) for k, v in by_first.items()}, alone, frozenset(first),
                    frozenset(bigrams), frozenset(singles), frozenset(alone_chars), frozenset(short_bigrams | bigrams),
                    words)


_TOKENIZER_LOCK = threading.Lock()


def tokenizer():
    """The parser's own jieba tokenizer (built once, by one thread: a warm-up in the background
    and the first command may ask at the same time)."""
    if _tokenizer.cache_info().currsize:
        return _tokenizer()
    with _TOKENIZER_LOCK:
        return _tokenizer()


@lru_cache(maxsize=1)
def _tokenizer():
    """The parser's own jieba tokenizer, with its verbs and suffixes added as words."""
    import jieba

    jieba.setLogLevel(60)
    tok = jieba.Tokenizer()
    tok.initialize()
    for w in grammar().words:
        tok.add_word(w, freq=50000)
    for w in ("专班", "常设群", "临时群", "设为", "并到", "并入", "合到", "别解散", "那个群"):
        tok.add_word(w, freq=80000)
    return tok


def warm_up(background: bool = False) -> None:
    """Build the grammar and load the tokenizer's dictionary (about a second) before traffic.
    ``background``: the grammar now (the pre-filter every message passes), the dictionary in a
    daemon thread (only commands need it; the first one waits for it)."""
    grammar()
    if background:
        threading.Thread(target=tokenizer, name="nlu-warm-up", daemon=True).start()
        return
    tokens("秋粮收购专班延期一个月")


@lru_cache(maxsize=16384)
def tokens(text: str) -> tuple[tuple[str, int, int], ...]:
    return tuple(tokenizer().tokenize(text, HMM=False))


# --- the pre-filter ------------------------------------------------------------------------------
CHOOSE_WORDS = ("选", "选择", "序号", "回复", "就", "要", "第", "个", "号", "群", "项", "吧", "的", "一二三四五六七八九")
_CHOOSE = re.compile(r"^(?:选|选择|序号|回复|就|要|就要)?\s*第?\s*(?P<n>[1-9]|[一二三四五六七八九])\s*(?:个|号|个群|项)?\s*(?:吧|的)?$")
_CN1 = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def may_be_command(raw: str) -> bool:
    """False when ``raw`` certainly contains no phrase of the grammar (no normalisation, no jieba)."""
    if not raw:
        return False
    g = grammar()
    low = raw.lower()
    if "@" in low:
        low = strip_mentions(low).strip()
    if "[" in low:
        low = STICKER.sub("", low)  # 很重[抱拳]
    if len(low) <= ALONE_MAX + 4:
        if all(ch in g.alone_chars or not ch.isalnum() for ch in low):
            return True  # 1, 重, 适中, 你好, ?: made only of such characters, checked exactly by the parser
        bg = g.short_bigrams
        return not g.singles.isdisjoint(low) or any(low[i:i + 2] in bg for i in range(len(low) - 1))
    if g.first_chars.isdisjoint(low):
        return False
    if not g.singles.isdisjoint(low):
        return True
    bg = g.bigrams
    return any(low[i:i + 2] in bg for i in range(len(low) - 1))


# --- boundaries ------------------------------------------------------------------------------------
def _edges(text: str, toks: list[tuple[str, int, int]], consumed: list[tuple[int, int]]):
    """Positions where a verb may start (left) and end (right)."""
    left, right = {0}, {len(text)}
    for i, ch in enumerate(text):
        if ch == " " or ch in _HARD or ch in "、()【】“”\"'《》":
            left.add(i + 1)
            right.add(i)
        elif ch in _PARTICLES:
            right.add(i)
    for w, s, e in toks:
        if w in FILLERS or w in THIS_GROUP:
            left.add(e)
            if w not in GROUP_SUFFIXES and not w.endswith("群"):
                right.add(s)  # 人员报备群: a verb right before 群 is part of the name
        if w.endswith(GROUP_SUFFIXES) or w == "群里":
            left.add(e)
    for s, e in consumed:
        left.add(e)
        right.add(s)
    return left, right


@lru_cache(maxsize=16384)
def _find_hits(text: str) -> tuple[Hit, ...]:
    """Phrases of the grammar in ``text``, leftmost-longest, not overlapping (a gapped phrase
    such as 我…几个群 wins at its start)."""
    g = grammar()
    gapped: dict[int, Hit] = {}
    for pat, gp in g.gapped:
        if pat.pattern[1] not in text:  # "(我…": the first character of its first piece
            continue
        for gm in pat.finditer(text):
            parts = tuple(gm.span(i) for i in range(1, (pat.groups or 0) + 1))
            h = Hit(gm.start(), gm.end(), gp, parts)
            old = gapped.get(h.start)
            if old is None or h.end > old.end:
                gapped[h.start] = h
    hits = []
    i, n = 0, len(text)
    by_first, literal = g.by_first, g.literal
    while i < n:
        h = gapped.get(i)
        if h is not None:
            hits.append(h)
            i = h.end
            continue
        for ph in by_first.get(text[i], ()):
            if text.startswith(ph, i):
                hits.append(Hit(i, i + len(ph), literal[ph]))
                i += len(ph)
                break
        else:
            i += 1
    return tuple(hits)


def _strip_fillers(chunk: str) -> tuple[str, bool]:
    """A slot without the fillers at its edges (and 那个/这个 inside); whether it named 这个群."""
    chunk = chunk.strip(" ,;。!?:、")
    if not chunk:
        return "", False
    toks = ["群" if w in ("那个群", "这个群") and i else w for i, (w, _, _) in enumerate(tokens(chunk))]
    this = False
    while toks and (toks[0] in FILLERS or toks[0].strip(" ,;。!?:、") == ""):
        this = this or toks[0] in THIS_GROUP and toks[0] not in ("这", "那", "个")
        toks.pop(0)
    while toks and (toks[-1] in FILLERS and toks[-1] not in GROUP_SUFFIXES or toks[-1].strip(" ,;。!?:、") == ""):
        if "".join(toks) in THIS_GROUP:
            break
        toks.pop()
    out = "".join(t for t in toks if t not in ("那个", "这个"))
    out = out.strip(" ,;。!?:、")
    if out in THIS_GROUP or out in GROUP_SUFFIXES:
        return "", True
    if out.startswith(("这个群", "本群", "此群", "该群")):
        this = True
    return out, this


_SPLIT_AFTER_SUFFIX = re.compile(r"(?:" + "|".join(GROUP_SUFFIXES) + r")(?:\([^)]*\)|【[^】]*】)?[)】」』”\]\"']*(?=\s|$)")
_REASON_MARK = re.compile(r"^(?:理由|原因|因为|由于|因|说明)\s*(?:是|为|:)?\s*")


def _split_group_rest(chunk: str) -> tuple[str, str]:
    """``防汛抗旱群 汛期前`` → (防汛抗旱群, 汛期前): a name ends at a suffix followed by a space."""
    m = _SPLIT_AFTER_SUFFIX.search(chunk)
    if m and m.end() < len(chunk):
        return chunk[:m.end()], chunk[m.end():]
    if " " in chunk.strip():
        head, _, tail = chunk.strip().partition(" ")
        return head, tail
    return chunk, ""


_MERGE_SPLIT = re.compile(r"\s*(?:合并到|合并进|并到|并入|合到|合进|到|进|入|至|和|与|跟|同|、|,)\s*")


def _two_groups(before: str, after: str, directional: bool) -> tuple[str, str]:
    if not _strip_fillers(before)[0]:
        before = ""
    if not _strip_fillers(after)[0]:
        after = ""
    if directional and before.strip() and after.strip():
        return before, after
    text = after if not before.strip() else before if not after.strip() else None
    if text is None:
        return before, after
    for m in _MERGE_SPLIT.finditer(text):
        a, b = text[:m.start()], text[m.end():]
        if a.strip() and b.strip():
            return a, b
    return text, ""


# --- parse -------------------------------------------------------------------------------------------
@lru_cache(maxsize=65536)
def _silent(text: str, bot_names: tuple[str, ...]) -> bool:
    """True when ``text`` is certainly no command, whatever the day (cached: 收到 comes often)."""
    if not may_be_command(text):
        return True
    t = clean(text, bot_names)
    if not t:
        return grammar().alone.get(text.strip().translate(_FW_Q)) is None
    if _CHOOSE.match(t) or _alone(t, grammar()) is not None:
        return False
    hits = _find_hits(t)
    if not hits:
        return True
    short = len(t) <= ALONE_MAX
    if all(BY_NAME[h.intent].tier <= 2 and not (short and h.phrase.text in BY_NAME[h.intent].alone_means)
           for h in hits):
        if _WORK_OPENERS.match(t) or _WORK_FIGURES.search(t):
            return True  # 请大家及时登记…, 今天完成秋粮收购3200吨: work text
        from governance.ritual import is_ritual  # cached; dispatch asks it about every message anyway

        return is_ritual(text)  # 收到，保证完成任务
    return False


def parse(text: str, *, today: date, bot_names: tuple[str, ...] = ()) -> Parse | None:
    """What ``text`` asks the bot to do, or None for a message that is no command."""
    bot_names = tuple(bot_names)
    if _silent(text, bot_names):
        return None
    p = _parse(text, today, bot_names)
    if p is None:
        return None
    return replace(p, slots={k: dict(v) if isinstance(v, dict) else v for k, v in p.slots.items()})


@lru_cache(maxsize=4096)
def _parse(text: str, today: date, bot_names: tuple[str, ...]) -> Parse | None:
    t = clean(text, bot_names)
    if not t:
        bare = text.strip().translate(_FW_Q)
        p = grammar().alone.get(bare)
        return _alone_parse(p, bare) if p else None
    g = grammar()
    m = _CHOOSE.match(t)
    if m:
        n = m.group("n")
        return Parse("choose", {"number": int(n) if n.isdigit() else _CN1[n]}, t, verb=t)
    hits = list(_find_hits(t))
    alone = _alone(t, g)
    if not hits and alone is None:
        return None
    try:
        period = find_period(t, today)
        period_error = None
    except DateParseError as e:  # 2月30日: recognised, impossible
        period, period_error = None, str(e)
    if period:  # 延到一月底: the verb keeps its 到, the period starts after it
        for h in hits:
            if h.start <= period.start < h.end < period.end:
                period = Found(period.period, h.end, period.end)
    consumed = [(period.start, period.end)] if period else []
    toks = tokens(t)
    left, right = _edges(t, toks, consumed)
    has_suffix = any(w.endswith(GROUP_SUFFIXES) for w, _, _ in toks)

    def ok(h: Hit) -> bool:
        if period and h.start < period.end and h.end > period.start:
            return False
        if t.startswith(NOMINAL_AFTER, h.end) and h.intent != "help":
            return False  # 登记工作, 完成情况: a noun
        if h.phrase.weak:
            intent = BY_NAME[h.intent]
            if not (("period" in intent.slots and period and not h.phrase.strict) or has_suffix):
                return False
        return h.start in left or h.end in right

    usable = [h for h in hits if ok(h)]
    if not usable and alone is not None:
        return _alone_parse(alone, t)
    if not usable:
        usable = [h for h in hits if not h.phrase.weak and not (period and h.start < period.end and h.end > period.start)]
        if not usable:
            return _alone_parse(alone, t) if alone else None
    best_tier = min(BY_NAME[h.intent].tier for h in usable)
    top = [h for h in usable if BY_NAME[h.intent].tier == best_tier]
    chosen = _prefer(top)
    intent = BY_NAME[chosen.intent]
    if intent.with_period and period is not None and chosen.phrase.reason:
        intent = BY_NAME[intent.with_period]  # 秋粮专班还得用一个月: a renewal
    mates = [h for h in usable if h.intent in (intent.name, chosen.intent)]
    others = [h for h in usable if h.intent != intent.name]
    remove = [chosen] + [h for h in mates if h is not chosen] + others
    spans = [sp for h in remove for sp in h.spans] + consumed
    leftover = _leftover(t, spans).replace("|", " ")
    if chosen.phrase.text in intent.alone_means and not period and "已" not in leftover \
            and not _strip_fillers(leftover)[0]:
        target = BY_NAME[intent.alone_means[chosen.phrase.text]]
        return Parse(target.name, {}, t, verb=chosen.phrase.text, consequential=target.consequential)
    if _not_a_command(text, t, intent, leftover):
        return None
    if intent.tier >= 3 and not intent.slots and len(_strip_fillers(leftover)[0].replace(" ", "")) > CHAT_MAX:
        return None  # 大家好，明天开会: a greeting or 确认 inside a longer message is no command
    found = _slots(intent, chosen, mates, remove, t, period, spans)
    if found is not None and period_error and "period" in BY_NAME[found.intent].slots:
        found.slots["period_error"] = period_error
    return found


def _not_a_command(raw: str, t: str, intent: Intent, leftover: str) -> bool:
    """Work text that happens to contain a verb: 本周完成入户走访120户, 请大家及时登记, 收到保证完成任务."""
    if intent.tier > 2:
        return False
    if _WORK_OPENERS.match(t) or _WORK_FIGURES.search(leftover):
        return True
    from governance.ritual import is_ritual

    return is_ritual(raw)  # the raw text: the answer _silent (and dispatch) already cached


def _alone(t: str, g: _Grammar) -> Phrase | None:
    if len(t) > ALONE_MAX:
        return None
    core = t.strip(" ,;。!?:~")
    p = g.alone.get(core)
    if p is not None:
        return p
    for lead in ALONE_LEADS:
        if core.startswith(lead) and core[len(lead):].strip() in g.alone:
            return g.alone[core[len(lead):].strip()]
    stripped, _ = _strip_fillers(core)
    return g.alone.get(stripped) if stripped else None


def _alone_parse(p: Phrase, t: str) -> Parse:
    intent = BY_NAME[p.intent]
    slots: dict[str, Any] = {}
    if intent.values:
        slots["value"] = intent.values.get(p.text)
    return Parse(intent.name, slots, t, verb=p.text)


# Some pairs are decided by meaning, not position: a report that something is useless is 没用.
_PREFER = {("report", "useless"): "useless", ("done", "restore"): "restore", ("confirm_order", "restore"): "restore",
           ("protect", "unprotect"): "unprotect"}


def _prefer(top: list[Hit]) -> Hit:
    chosen = min(top, key=lambda h: (h.start, -(h.end - h.start)))
    names = {h.intent for h in top}
    for (a, b), winner in _PREFER.items():
        if chosen.intent == a and b in names:
            return min((h for h in top if h.intent == winner), key=lambda h: h.start)
    return chosen


def _leftover(t: str, spans: list[tuple[int, int]]) -> str:
    out = []
    pos = 0
    for s, e in sorted(spans):
        if s >= pos:
            out.append(t[pos:s])
            out.append(" | ")
        pos = max(pos, e)
    out.append(t[pos:])
    return "".join(out)


def _chunks(t: str, spans: list[tuple[int, int]], lo: int = 0, hi: int | None = None) -> list[tuple[int, int]]:
    """The stretches of ``t[lo:hi]`` outside ``spans``, cut at hard punctuation."""
    hi = len(t) if hi is None else hi
    marks = [0] * (len(t) + 1)
    for s, e in spans:
        for i in range(max(s, lo), min(e, hi)):
            marks[i] = 1
    out, start = [], None
    for i in range(lo, hi + 1):
        cut = i == hi or marks[i] or t[i] in _HARD
        if cut:
            if start is not None and t[start:i].strip():
                out.append((start, i))
            start = None
        elif start is None:
            start = i
    return out


def _cut_at_suffix(t: str, s: int, e: int) -> tuple[int, int]:
    """The stretch up to the first word ending in a group suffix (followed by more, unspaced)."""
    for w, a, b in tokens(t[s:e]):
        if b < e - s and w.endswith(GROUP_SUFFIXES) and (w == "群" or w not in THIS_GROUP) and a > 0 and t[s + b] != " ":
            return s, s + b
    return s, e


def _first_group(t: str, chunks: list[tuple[int, int]]) -> tuple[str | None, bool, tuple[int, int] | None]:
    """The first chunk that names a group: one ending in a group suffix (群, 专班) if any."""
    this = False
    named = [c for c in chunks if _strip_fillers(t[c[0]:c[1]])[0].endswith(GROUP_SUFFIXES)]
    if named and named[0] != chunks[0]:
        chunks = named + [c for c in chunks if c not in named]
    for s, e in chunks:
        ref, named_this = _strip_fillers(t[s:e])
        if ref and not ref.endswith(GROUP_SUFFIXES):
            s2, e2 = _cut_at_suffix(t, s, e)  # 人口普查登记群登记工作 → 人口普查登记群
            if e2 < e:
                ref2, _ = _strip_fillers(t[s2:e2])
                if ref2 and len(ref2) > 1:
                    ref, s, e = ref2, s2, e2
        if ref and len(ref) > 1 and not (this and not ref.endswith(GROUP_SUFFIXES)):
            return ref, this or named_this, (s, e)
        this = this or named_this
    return None, this, None


def _slots(intent: Intent, chosen: Hit, mates: list[Hit], remove: list[Hit], t: str,
           period: Found | None, spans: list[tuple[int, int]]) -> Parse:
    slots: dict[str, Any] = {}
    this = False
    used: list[tuple[int, int, str]] = [(s, e, "verb") for h in remove for s, e in h.spans]
    if period and "period" in intent.slots:
        slots["period"] = period.period
        used.append((period.start, period.end, "period"))
    elif period:
        spans = [s for s in spans if s != (period.start, period.end)]
    if intent.name == "register":
        slots.update(_register_slots(t, chosen, mates, period))
    elif intent.name == "create":
        slots.update(_create_slots(t, chosen, period))
    elif intent.name == "report":
        after = t[chosen.end:].strip(" :,;。")
        before = t[:chosen.start].strip(" :,;。")
        body = after or before
        body = re.sub(r"^(?:一下|一个情况|个情况|情况|一个问题|个问题|问题|一件事|件事|个事|下)\s*[:,]?\s*", "", body).strip()
        slots["text"] = body or None
    elif intent.name == "merge":
        a, b = _two_groups(t[:chosen.start], t[chosen.end:], chosen.phrase.text not in _UNDIRECTED)
        ga, this_a = _strip_fillers(_without(a, mates))
        gb, _ = _strip_fillers(_without(b, mates))
        slots["group"] = ga or None
        slots["target"] = gb or None
        this = this_a
    elif "group" in intent.slots:
        chunks = _chunks(t, spans)
        if intent.name == "keep":
            ref, this, where = _keep_group(t, chunks)
        else:
            ref, this, where = _first_group(t, chunks)
        slots["group"] = ref
        if ref and where:
            used.append((where[0], where[1], "group"))
        if "reason" in intent.slots:
            slots["reason"] = _reason(t, chosen, mates, where, ref, spans)
    if "group" in intent.slots and not slots.get("group"):
        this = True
    for key in ("group", "target"):
        if slots.get(key):
            slots[key] = _REF_TAIL.sub("", slots[key]) or slots[key]
        if slots.get(key) and not _may_name_a_group(slots[key]):
            return None  # 明天的会议延期到下周一, 已收到，按时完成: work text, not a command
    if _only_a_statement(intent, chosen, mates, t, slots.get("group")):
        return None
    rest = _leftover(t, [(s, e) for s, e, _ in used]).replace("|", " ")
    rest = re.sub(r"\s+", " ", rest).strip()
    return Parse(intent.name, slots, t, verb=chosen.phrase.text, rest=rest, this_group=this,
                 weak=chosen.phrase.weak, consequential=intent.consequential, spans=tuple(sorted(used)))


_REF_TAIL = re.compile(r"的?(?:到期时间|到期日期|到期日|期限|截止时间|截止日期|有效期|时间|日期)$")


def _only_a_statement(intent: Intent, chosen: Hit, mates: list[Hit], t: str, ref: str | None) -> bool:
    """秋粮收购已经结束了: a fact about work, not 完成 of a group (no 群/专班, the verb not first)."""
    if not intent.statements or not ref or ref.endswith(GROUP_SUFFIXES):
        return False
    statements = _statement_set(intent.name)
    if any(h.phrase.text not in statements for h in mates):
        return False  # 解散/不用了 said too
    return bool(_strip_fillers(t[:chosen.start])[0])


@lru_cache(maxsize=32)
def _statement_set(name: str) -> frozenset[str]:
    return frozenset(clean(w) for w in BY_NAME[name].statements.split())


def _may_name_a_group(ref: str) -> bool:
    """False for a "group" that is a work noun (会议, 本次检查) or an acknowledgement (收到)."""
    if ref.endswith(GROUP_SUFFIXES):
        return True
    if ref.endswith(NON_GROUP_NOUNS):
        return False
    from governance.ritual import is_ritual

    return not is_ritual(ref)


_UNDIRECTED = frozenset(clean(w) for w in MERGE_UNDIRECTED.split())


def _without(part: str, mates: list[Hit]) -> str:
    """``part`` with the other phrases of the intent blanked (合并 A 到 B 合并一下)."""
    for h in mates:
        part = part.replace(h.phrase.text, " ")
    return part


def _keep_group(t: str, chunks: list[tuple[int, int]]):
    ref, this, where = _first_group(t, chunks)
    if not ref or where is None:
        return ref, this, where
    raw = t[where[0]:where[1]]
    head, tail = _split_group_rest(raw.strip())
    for word in sorted(THIS_GROUP, key=len, reverse=True):
        if len(word) >= 2 and raw.strip().startswith(word) and raw.strip()[len(word):].startswith(" "):
            offset = where[0] + raw.index(word)
            return None, True, (offset, offset + len(word))
    if tail.strip():
        offset = where[0] + raw.index(head)
        ref2, this2 = _strip_fillers(head)
        if ref2:
            return ref2, this or this2, (offset, offset + len(head))
    return ref, this, where


def _reason(t: str, chosen: Hit, mates: list[Hit], where, ref, spans) -> str | None:
    cut = [(h.start, h.end) for h in mates + [chosen] if not h.phrase.reason]
    if where:
        cut.append(where)
    text = _leftover(t, cut).replace("|", " ")
    parts = [p for p in re.split(r"[\s,;。!?]+", text) if p]
    cleaned = []
    for p in parts:
        p = _REASON_MARK.sub("", p)
        s = _strip_reason(p)
        if s and s not in THIS_GROUP:
            cleaned.append(s)
    reason = "，".join(cleaned)
    return reason or None


_REASON_LEAD = frozenset("我 我们 咱们 请 麻烦 帮我 把 给 吧 了 啊 呀 呢 哦 这个群 本群 该群 此群 群 那个群 暂时 暂 先 千万 一定 "
                         "务必 还是".split())


def _strip_reason(part: str) -> str:
    """A reason keeps its words (要用, 还在用); only leading politeness and trailing particles go."""
    toks = [w for w, _, _ in tokens(part)]
    while toks and toks[0] in _REASON_LEAD:
        toks.pop(0)
    while toks and (toks[-1] in _PARTICLES or toks[-1] in ("谢谢", "辛苦了")):
        toks.pop()
    return "".join(toks).strip(" ,;。!?:、【】「」『』“”()\"'")


_NAME_TAIL = ("帮我", "帮忙", "请", "吧", "一下", "谢谢", "了", "麻烦", "给我", "帮")


def _trim_name(name: str) -> str:
    name = name.strip(" ,;。!?:、")
    changed = True
    while changed:
        changed = False
        for tail in _NAME_TAIL:
            if name.endswith(tail) and len(name) > len(tail) + 1:
                name = name[: -len(tail)].rstrip(" ,;。!?:、")
                changed = True
    return name


def _register_slots(t: str, chosen: Hit, mates: list[Hit], period: Found | None) -> dict[str, Any]:
    after = t[chosen.end:]
    for h in mates:
        if h.start >= chosen.end:
            after = after[:h.start - chosen.end] + " " * (h.end - h.start) + after[h.end - chosen.end:]
    after = re.sub(r"^\s*(?:一下|一个|个|下)?\s*(?:(?:新的?)?\s*(?:工作)?群(?!名))?\s*[:,]?\s*", "", after)
    positional, fields = split_fields(after)
    if not positional and "name" not in fields:
        before, _ = _strip_fillers(re.split(r"[,;。!?]", t[:chosen.start])[-1])
        if before:
            fields["name"] = before
    elif positional and "name" not in fields:
        name, _ = _strip_fillers(positional[0]) if positional[0] not in ("群",) else ("", False)
        if name:
            fields["name"] = positional[0].strip()
    for word in positional[1:]:
        from nlu.fields import category_of

        if category_of(word) and "category" not in fields:
            fields["category"] = word
        elif "expires" not in fields:
            fields["expires"] = word
    if fields.get("name"):
        fields["name"] = _trim_name(fields["name"])
    out: dict[str, Any] = {"fields": fields}
    if fields.get("name"):
        out["name"] = fields["name"]
    return out


_MEMBER_SEP = re.compile(r"[\s,、;]+|和|及|与")


def _create_slots(t: str, chosen: Hit, period: Found | None) -> dict[str, Any]:
    """建群 冬季防火专班 成员:张建国、王志强 到期:明年2月底: the name, the members, the period."""
    from nlu.intents import CREATE_KEYS

    after = t[chosen.end:]
    if period is not None and period.start >= chosen.end:  # the period is its own slot
        after = after[:period.start - chosen.end] + " " * (period.end - period.start) + after[period.end - chosen.end:]
    after = re.sub(r"^\s*(?:一下|一个|个|下)?\s*(?:(?:新的?)?\s*(?:工作)?群(?!名))?\s*[:,]?\s*", "", after)
    positional, fields = split_fields(after, CREATE_KEYS)
    name = fields.get("name") or (positional[0].strip() if positional else "")
    name = _trim_name(re.sub(r"^(?:叫|名叫|名为|叫做)\s*", "", name)) if name else ""
    members = [m for m in _MEMBER_SEP.split(fields.get("members") or "") if m and m not in FILLERS]
    out: dict[str, Any] = {"name": name or None, "members": tuple(members)}
    if fields.get("purpose"):
        out["purpose"] = fields["purpose"]
    if fields.get("expires") and period is None:
        out["period_text"] = fields["expires"]
    return out
