"""Chinese text helpers shared by the rules: normalisation and name similarity.

``normalize`` folds traditional characters to simplified (zhconv), full-width forms to
half-width (NFKC), case, and drops whitespace.  ``name_tokens`` segments a group name with
jieba and drops generic words (群, 工作群, 微信群, trailing numbers, "新"), so that
"城關鎮脫貧攻堅工作群（新）" and "城关镇脱贫攻坚群2" compare equal.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import zhconv

_SPACE_RE = re.compile(r"\s+")
# generic words that say "this is a chat group" and carry no identity
_GENERIC_TOKENS = frozenset(
    {
        "群", "工作群", "微信群", "qq群", "企业微信群", "交流群", "工作", "沟通群", "联络群",
        "群聊", "新", "新群", "的", "之", "临时", "临时群", "备用", "备用群", "二群", "一群",
    }
)
_TRAILING_NOISE_RE = re.compile(r"(\(新\)|\(\d+\)|新群|新|\d+|[一二三四五六七八九十]群|备用)+$")
_PUNCT_CATEGORIES = ("P", "S", "Z", "C")


@lru_cache(maxsize=65536)
def normalize(text: str) -> str:
    """Simplified, half-width, lower-case, no whitespace."""
    if not text:
        return ""
    out = unicodedata.normalize("NFKC", text)
    if not out.isascii():
        out = zhconv.convert(out, "zh-hans")
    return _SPACE_RE.sub("", out).lower()


def strip_symbols(text: str) -> str:
    """Drop punctuation, symbols (emoji), separators and control characters."""
    return "".join(ch for ch in text if unicodedata.category(ch)[0] not in _PUNCT_CATEGORIES)


@lru_cache(maxsize=65536)
def normalize_name(name: str) -> str:
    """Canonical form of a group name: normalised, no punctuation, no trailing 2/新/备用."""
    text = normalize(name)
    text = _TRAILING_NOISE_RE.sub("", text)
    text = strip_symbols(text)
    for suffix in ("企业微信群", "工作群", "微信群", "交流群", "沟通群", "联络群", "群聊", "群"):
        if text.endswith(suffix) and len(text) > len(suffix):
            text = text[: -len(suffix)]
            break
    return text


def has_copy_suffix(name: str) -> bool:
    """True for names like "脱贫攻坚群2", "脱贫攻坚群（新）", "防汛备用群"."""
    text = normalize(name)
    for suffix in ("群聊", "群"):
        text = text.removesuffix(suffix)
    return bool(_TRAILING_NOISE_RE.search(text)) and bool(_TRAILING_NOISE_RE.sub("", text))


def _jieba():
    import jieba  # imported lazily: loading the dictionary costs ~1 s

    jieba.setLogLevel(60)
    return jieba


@lru_cache(maxsize=65536)
def name_tokens(name: str) -> frozenset[str]:
    """jieba tokens of a group name without generic words."""
    text = normalize_name(name)
    if not text:
        return frozenset()
    tokens = {t for t in _jieba().lcut(text) if t.strip()}
    return frozenset(t for t in tokens if t not in _GENERIC_TOKENS)


def name_similarity(a: str, b: str) -> float:
    """1.0 for equal canonical names, otherwise Jaccard of jieba tokens (0..1)."""
    na, nb = normalize_name(a), normalize_name(b)
    if not na or not nb:
        return 0.0
    if na == nb:
        return 1.0
    ta, tb = name_tokens(a), name_tokens(b)
    if not ta or not tb:
        return 0.0
    return len(ta & tb) / len(ta | tb)


def text_similarity(a: str | None, b: str | None) -> float:
    """Token Jaccard of two free texts (purposes); 0 when either is empty."""
    if not a or not b:
        return 0.0
    return name_similarity(a, b)
