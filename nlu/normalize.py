"""What cadres type, folded to one form: simplified, half-width, no @-mentions, emoji or stickers.

Unlike ``handlers.text.normalize`` this keeps the punctuation that can be part of a group name
(、，()【】 “”) so that names survive; every other symbol becomes a space.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import zhconv

DEFAULT_BOT_NAMES = ("群治助手", "群治机器人", "群治", "治理助手", "助手", "机器人", "小助手")

# WeCom puts U+2005 after an @-mention; the ideographic space and NBSP appear in pasted text.
_SPACE_CHARS = str.maketrans({"\u2005": " ", "\u3000": " ", "\xa0": " ", "\u200b": "", "\ufeff": "",
                              "\u200d": "", "\ufe0f": "", "\t": " ", "\n": " ", "\r": " "})
STICKER = re.compile(r"\[(?:强|弱|抱拳|握手|微笑|愉快|偷笑|捂脸|玫瑰|加油|OK|ok|耶|鼓掌|太阳|爱心|心|拳头|胜利|"
                      r"呲牙|憨笑|可怜|流泪|大哭|皱眉|奸笑|机智|嘿哈|社会社会|发呆|害羞|尴尬|得意|调皮|抠鼻|吃瓜|"
                      r"旺柴|让我看看|666|合十|庆祝|烟花|礼物|红包|福|咖啡|蛋糕|月亮|凋谢|炸弹|便便|猪头|Emm|哇)\]")
_MENTION = re.compile(r"@\S{1,24}?(?:\s|$)")
_SPACES = re.compile(r"\s+")
_ARROWS = re.compile(r"\s*(?:->|=>|→|⇒|➡|➔|⟶)\s*")
_KEEP_SYMBOLS = set("、,，()（）【】[]《》“”\"'‘’:：.。;；?？!！-/+~～·_#%")
_EDGE = " ,，.。;；!！?？~～·、"


@lru_cache(maxsize=8192)
def to_simplified(text: str) -> str:
    return zhconv.convert(text, "zh-hans") if not text.isascii() else text


def _drop_symbols(text: str) -> str:
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat[0] in "LN" or ch in _KEEP_SYMBOLS or ch == " ":
            out.append(ch)
        elif cat[0] in "SPZ":
            out.append(" ")  # emoji, dingbats, other punctuation: a separator
        # control and format characters vanish
    return "".join(out)


def strip_mentions(text: str, bot_names: tuple[str, ...] = ()) -> str:
    """Drop @-mentions: known bot names anywhere (also glued to the next word), any other
    ``@name`` up to the next space."""
    for name in tuple(bot_names) + DEFAULT_BOT_NAMES:
        if "@" + name in text:
            text = text.replace("@" + name, " ")
    if "@" in text:
        text = _MENTION.sub(" ", text + " ")
    return text


@lru_cache(maxsize=8192)
def clean(text: str, bot_names: tuple[str, ...] = ()) -> str:
    """Simplified, NFKC (full-width → half-width), lower-case Latin, single spaces, no mentions,
    no emoji or WeChat sticker codes, no leading/trailing punctuation."""
    if not text:
        return ""
    t = text.translate(_SPACE_CHARS)
    t = unicodedata.normalize("NFKC", t)
    if ">" in t or "→" in t or "⇒" in t or "➡" in t or "➔" in t or "⟶" in t:
        t = _ARROWS.sub(" 到 ", t)  # 合并：A → B
    t = STICKER.sub(" ", t)
    t = strip_mentions(t, bot_names)
    t = to_simplified(t)
    t = _drop_symbols(t)
    t = _SPACES.sub(" ", t).strip(_EDGE)
    return t.lower() if t.isascii() else t
