"""Registration fields: ``报备 城关镇防汛、抗旱指挥群 用途:防汛抗旱指挥 类别:临时群 到期:30天``.

A value runs until the next field key (名称/用途/单位/类别/到期 and their synonyms), so names
keep their spaces, 、，() and brackets. A key is followed by ``:`` (full- or half-width), ``=``,
``是`` or ``为``, or stands alone between spaces. Trailing pieces that are a category (临时群)
or a date (12月31日, 到月底) are split off a value, as in ``报备 秋粮收购专班 临时群 12月31日``.
"""
from __future__ import annotations

import re
from datetime import date
from functools import lru_cache

from nlu.intents import CATEGORY_WORDS, FIELD_KEYS

_SEP = " ,，;；。"
_PROBE_DAY = date(2026, 6, 15)  # any day: only "is this a date" is asked


@lru_cache(maxsize=8)
def _key_pattern(keys: tuple[str, ...]) -> re.Pattern:
    labels = "|".join(map(re.escape, sorted(keys, key=len, reverse=True)))
    return re.compile(r"(?:^|(?<=[\s,，;；。]))(" + labels + r")(?:\s*[:：=]\s*|\s*(?:是|为)\s*|\s+(?=\S))")


def category_of(word: str) -> str | None:
    w = word.strip(_SEP)
    for cat in CATEGORY_WORDS:
        if w == cat or w == cat + "群":
            return w
    if w.endswith("群") and w[:-1] in ("临时", "常设", "长期", "机关", "领导班子", "脱贫攻坚"):
        return w
    return None


def is_date_word(word: str) -> bool:
    from nlu.normalize import clean
    from nlu.periods import find_period

    w = re.sub(r"^(?:到期|期限|截止|截至|有效期)\s*(?:[:：]|是|为)?\s*", "", clean(word).strip(_SEP))
    if not w:
        return False
    try:
        found = find_period(w, _PROBE_DAY)
    except Exception:
        return False
    return found is not None and found.start == 0 and found.end == len(w)


def _peel(value: str) -> tuple[str, list[str]]:
    """Split trailing category/date pieces off ``value`` (separated by spaces or commas)."""
    extras: list[str] = []
    v = value.strip(_SEP)
    while True:
        m = re.search(r"[\s,，;；]+([^\s,，;；]+)$", v)
        if not m:
            break
        piece = m.group(1)
        if category_of(piece) or is_date_word(piece):
            extras.insert(0, piece)
            v = v[:m.start()].strip(_SEP)
        else:
            break
    return v, extras


def split_fields(args: str, keys: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """``(positional, fields)`` like ``handlers.text.split_fields``, but the text before the first
    key is one name (spaces and 、， kept): ``positional[0]`` is the name, any further items are
    category or date words peeled off its end."""
    keys = keys or FIELD_KEYS
    pattern = _key_pattern(tuple(keys))
    matches = list(pattern.finditer(args))
    head = args[: matches[0].start()] if matches else args
    fields: dict[str, str] = {}
    extras: list[str] = []
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(args)
        value, more = _peel(args[m.end():end])
        name = keys[m.group(1)]
        if name in ("category", "expires"):
            value, more = args[m.end():end].strip(_SEP), []
            value, more = _peel_value_of(name, value)
        fields.setdefault(name, value)
        extras.extend(more)
    head_name, head_extras = _peel(head)
    if head_name and " " not in head_name and (category_of(head_name) or is_date_word(head_name)):
        head_extras.insert(0, head_name)
        head_name = ""
    extras = head_extras + extras
    if head_name:
        return [head_name] + extras, fields
    for word in extras:
        fields.setdefault("category" if category_of(word) else "expires", word)
    return [], fields


def _peel_value_of(name: str, value: str) -> tuple[str, list[str]]:
    """类别:临时群 到月底 → (临时群, [到月底]) and 到期:12月31日 临时群 → (12月31日, [临时群])."""
    parts = [p for p in re.split(r"[\s,，;；]+", value) if p]
    if len(parts) <= 1:
        return value, []
    if name == "category" and category_of(parts[0]):
        return parts[0], parts[1:]
    if name == "expires" and is_date_word(parts[0]):
        return parts[0], parts[1:]
    return value, []
