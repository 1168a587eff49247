"""Normalising what cadres type: traditional → simplified, full-width → half-width, @-mentions."""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import zhconv

_MENTION = re.compile(r"^(?:\s*@\S+\s+)+|^\s*@\S+$")
_SPACES = re.compile(r"\s+")
# NFKC folds full-width letters/digits/colons; keep the Chinese enumeration comma as a separator.
_PUNCT = str.maketrans({"：": ":", "，": ",", "；": ";", "、": ",", "（": "(", "）": ")", "\u3000": " "})


@lru_cache(maxsize=4096)
def to_simplified(text: str) -> str:
    return zhconv.convert(text, "zh-hans")


def normalize(text: str, bot_names: tuple[str, ...] = ()) -> str:
    """Simplified Chinese, half-width punctuation, single spaces, no leading @-mention."""
    if not text:
        return ""
    t = unicodedata.normalize("NFKC", text.translate(_PUNCT))
    t = to_simplified(t)
    for name in bot_names:
        t = t.replace("@" + name, " ")
    t = _MENTION.sub("", t)
    return _SPACES.sub(" ", t).strip()


def split_fields(args: str, keys: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Split ``名称 用途:xx 单位:yy`` into positional words and keyed fields (any order).

    ``keys`` maps every accepted label (e.g. 用途, 目的) to a canonical field name.
    A value runs until the next known label.
    """
    labels = sorted(keys, key=len, reverse=True)
    pattern = re.compile(r"(?:^|\s|,)(" + "|".join(map(re.escape, labels)) + r")\s*[:=]\s*")
    fields: dict[str, str] = {}
    matches = list(pattern.finditer(args))
    head = args[: matches[0].start()] if matches else args
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(args)
        fields[keys[m.group(1)]] = args[m.end():end].strip(" ,")
    positional = [w for w in re.split(r"[\s,]+", head.strip()) if w]
    return positional, fields
