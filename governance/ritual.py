"""Ritual (留痕) versus work messages.

A ritual message proves presence, not work: 收到, 签到, 已阅, 好的, "1", a thumbs-up,
[强], "收到，马上落实！", 领导辛苦了.  Ritual traffic never keeps a group alive.

Classification, in order (first match wins):

1. exact hit in :data:`RITUAL_PHRASES` on the raw text (fast path, no normalisation);
2. normalise (traditional -> simplified with zhconv, full-width -> half-width, lower case,
   no spaces), drop WeChat sticker codes ``[强]``/``[抱拳]``, emoji and punctuation;
   nothing left -> ritual; a hit in :data:`RITUAL_PHRASES` -> ritual; only ``1``/``+1``
   -> ritual;
3. longer than :data:`MAX_RITUAL_CHARS` -> work (never runs jieba on long texts);
4. jieba tokens: every token in :data:`RITUAL_TOKENS` -> ritual; a sign-in marker
   (签到/打卡/已到) plus at most 4 other characters (a name) -> ritual;
5. otherwise work.

Results are cached per raw text (the same 收到 arrives thousands of times a day).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from governance.text import normalize, strip_symbols

RITUAL_PHRASES = frozenset(
    {
        "收到", "收到收到", "已收到", "收到了", "签到", "已签到", "已阅", "已读", "阅", "好的",
        "好", "好好", "好哒", "好嘞", "嗯", "嗯嗯", "哦", "ok", "okay", "1", "+1", "谢谢",
        "感谢", "谢谢领导", "明白", "明白了", "遵照执行", "坚决落实", "坚决执行", "马上落实",
        "收到马上落实", "收到立即落实", "收到马上办", "马上办", "立即落实", "抓紧落实", "照办",
        "遵命", "是", "是的", "对", "到", "已到", "打卡", "已打卡", "辛苦了", "领导辛苦了",
        "赞", "点赞", "666", "收到谢谢", "好的收到", "收到好的", "知道了", "了解", "懂了",
    }
)

RITUAL_TOKENS = frozenset(
    {
        "收到", "签到", "已", "已阅", "阅", "已读", "好", "好的", "的", "了", "啊", "呀", "哈",
        "哈哈", "嗯", "嗯嗯", "哦", "呢", "吧", "滴", "哒", "嘞", "ok", "okay", "1", "谢谢",
        "感谢", "多谢", "明白", "知道", "了解", "遵照", "执行", "坚决", "落实", "马上", "立即",
        "立刻", "抓紧", "全力", "配合", "照办", "办", "是", "对", "到", "打卡", "领导", "辛苦",
        "您", "大家", "各位", "关心", "指导", "支持", "赞", "点赞", "优秀", "棒", "厉害",
        "学习", "认真", "贯彻", "坚决落实", "坚决执行", "遵照执行", "一定", "保证", "完成任务",
        "任务", "完成", "请", "放心", "老师", "书记", "镇长", "主任", "村长", "部长", "同志",
    }
)
SIGN_IN_MARKERS = ("签到", "打卡", "已到")
MAX_RITUAL_CHARS = 16

_STICKER_RE = re.compile(r"\[[^\[\]]{1,6}\]")
_ONES_RE = re.compile(r"^\+?1+$")


def _jieba():
    import jieba

    jieba.setLogLevel(60)
    return jieba


@lru_cache(maxsize=131072)
def is_ritual(text: str) -> bool:
    """True if ``text`` is a ritual (留痕) message, False if it carries work content."""
    if text in RITUAL_PHRASES:
        return True
    norm = normalize(text or "")
    norm = _STICKER_RE.sub("", norm)
    core = strip_symbols(norm)
    if not core or core in RITUAL_PHRASES or _ONES_RE.match(core):
        return True
    if len(core) > MAX_RITUAL_CHARS:
        return False
    tokens = [t for t in _jieba().lcut(core) if t.strip()]
    if all(t in RITUAL_TOKENS for t in tokens):
        return True
    for marker in SIGN_IN_MARKERS:
        if marker in core:
            rest = "".join(t for t in tokens if t not in RITUAL_TOKENS and t != marker)
            if len(rest) <= 4 and not any(ch.isdigit() for ch in rest):
                return True
    return False


@dataclass
class RitualStats:
    total: int = 0
    ritual: int = 0

    @property
    def work(self) -> int:
        return self.total - self.ritual

    @property
    def share(self) -> float:
        """Ritual share of all messages (0.0 for no messages)."""
        return self.ritual / self.total if self.total else 0.0


class RitualCounter:
    """Per-group running counts of ritual versus work messages."""

    def __init__(self) -> None:
        self.groups: dict[str, RitualStats] = {}

    def add(self, group_id: str, text: str) -> bool:
        """Count one message; returns ``is_ritual(text)``."""
        ritual = is_ritual(text)
        stats = self.groups.get(group_id)
        if stats is None:
            stats = self.groups[group_id] = RitualStats()
        stats.total += 1
        stats.ritual += ritual
        return ritual

    def stats(self, group_id: str) -> RitualStats:
        return self.groups.get(group_id, RitualStats())


def ritual_stats(messages: Iterable[tuple[str, str]]) -> dict[str, RitualStats]:
    """``{group_id: RitualStats}`` for ``(group_id, text)`` pairs."""
    counter = RitualCounter()
    for group_id, text in messages:
        counter.add(group_id, text)
    return counter.groups
