"""Every platform, in one list. A new platform is a folder ``platforms/<name>/`` whose ``__init__``
defines ``platform`` (see ``platforms.base.Platform``) and one line here.

From this list the web app mounts the inbound routes (``bot/routes.py``), ``qunzhi serve`` prints
what each platform receives and sends, the runtime takes each platform's reply deadline, and the
lifecycle asks what a platform can do to a group (``platforms.capabilities``).
"""
from __future__ import annotations

import importlib
import sys

from platforms.base import DEFAULT_REPLY_DEADLINE, Platform

PLATFORMS = [
    "platforms.wecom",   # 企业微信自建应用: /wecom/callback
    "platforms.aibot",   # 企业微信智能机器人: /wecom/aibot/callback
    "platforms.bridge",  # 桥接（个人微信等）: /bridge/events
    "platforms.dingtalk",  # 钉钉机器人: /dingtalk/robot, /dingtalk/card, /dingtalk/events (or Stream mode)
    "platforms.local",   # 本地对话页: /local (development, loopback only)
    "platforms.feishu",  # 飞书自建应用: /feishu/callback
]


def all_platforms() -> list[Platform]:
    """The registered platforms, in order (each module imported once; its ``platform``). Cheap:
    the lifecycle asks per group."""
    modules = sys.modules
    return [(modules.get(name) or importlib.import_module(name)).platform for name in PLATFORMS]


def by_name(name: str) -> Platform | None:
    """The platform registered as ``name`` (``"wecom"``), or None."""
    return next((p for p in all_platforms() if p.name == name), None)


def owner_of(platform: str | None) -> Platform | None:
    """The platform an event's or a group's ``platform`` value belongs to (``"wechat"`` → the
    bridge), or None (``"ledger"``, ``"archive"``: known from files, no platform behind them). A
    platform's own name wins over another's ``owns`` (the bridge carries any platform it is told)."""
    platforms = all_platforms()
    return (next((p for p in platforms if p.name == platform), None)
            or next((p for p in platforms if p.owns(platform)), None))


def by_channel(channel: str) -> Platform | None:
    """The platform whose sender delivers an outbox ``channel`` (``"user"`` → WeCom), or None."""
    return next((p for p in all_platforms() if channel in p.channels), None)


def reply_deadline(platform: str | None) -> float:
    """Seconds an inbound request for an event of ``platform`` waits for it to be stored before
    the platform's retry signal (503) is answered."""
    owner = owner_of(platform)
    return owner.reply_deadline if owner is not None else DEFAULT_REPLY_DEADLINE


def startup_lines(settings, *, host: str, port: int) -> list[str]:
    """One line per platform, in Chinese: configured or not, what it receives and sends."""
    return [p.describe(settings, host=host, port=port) for p in all_platforms()]
