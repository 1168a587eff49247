"""Which sender carries an outbox row: one sender per channel, and the route of each row.

Channels (``OutboxMessage.channel``), each belonging to one platform:

===============  ==========================================================================
``user``         a WeCom person, through the self-built app (``message/send``)
``appchat``      a WeCom app group (``appchat/send``)
``card_update``  a WeCom card, through its response code (``message/update_template_card``)
``aibot``        an answer to an AI bot callback, through its ``response_url``
``bridge``       an instruction or a message to a bridge (personal WeChat) group or person
``feishu``       a Feishu person (``feishu:ou_…``), through the Feishu app (``im/v1/messages``)
``feishu_chat``  a Feishu group, through the Feishu app
``feishu_card``  a tapped Feishu card, through its callback token (``interactive/v1/card/update``)
===============  ==========================================================================

:func:`build_senders` builds the senders the settings allow (the one place that does);
:func:`route` picks the sender for one row, or says why there is none (the dispatcher then
marks the row ``unreachable`` and counts it).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from platforms.base import Sender

# WeCom 101138: one use, within an hour of the callback; the row's created_at is a little after
# the callback (a late handler's reply up to minutes after), so the route stops using it earlier.
RESPONSE_URL_TTL = timedelta(hours=1)
RESPONSE_URL_MARGIN = timedelta(minutes=5)
BRIDGE_INSTRUCTIONS = ("dissolve", "cancel_dissolve")


def _registered_channels() -> tuple[str, ...]:
    """Every outbox channel some registered platform's sender delivers (``Platform.channels``): a
    new platform's channels join here without a second list to keep."""
    from platforms.registry import all_platforms

    return tuple(dict.fromkeys(c for p in all_platforms() for c in p.channels))


CHANNELS = _registered_channels()


def build_senders(settings) -> dict[str, Sender]:
    """The sender of every channel the configured platforms can send on (empty: local mode):
    each registered platform's ``sender(settings)`` on its ``channels`` (platforms.registry)."""
    from platforms.registry import all_platforms

    senders: dict[str, Sender] = {}
    for platform in all_platforms():
        sender = platform.sender(settings)
        if sender is not None:
            senders.update({channel: sender for channel in platform.channels})
    return senders


@dataclass(frozen=True)
class Route:
    how: str        # user | appchat | card_update | aibot | bridge_instruction | bridge_group | bridge_user
    sender: Sender
    to: str | None = None  # another recipient than the row's: the person's account on the platform that carries it


def route(row, senders: dict[str, Sender], now: datetime, *, response_url_free: bool = True,
          bridge_group: bool = True) -> Route | str:
    """The route of one outbox row, or the reason (Chinese, for the operator) it has none.

    ``response_url_free``: no other row has used (or is using) this row's ``response_url``;
    ``bridge_group``: the row's recipient is a stored group (else a bridge person)."""
    p = row.payload or {}
    channel = row.channel
    if channel == "aibot":
        url = p.get("response_url")
        fresh = url and response_url_free and now < _aware(row.created_at) + RESPONSE_URL_TTL - RESPONSE_URL_MARGIN
        if fresh and "aibot" in senders:
            return Route("aibot", senders["aibot"])
        if not p.get("chatid") and "user" in senders:  # a direct chat: the person, through the app
            return Route("user", senders["user"])
        why = ("回调的 response_url 已用过或已过一小时" if url else "没有可用的回调 response_url")
        where = "群聊" if p.get("chatid") else "个人（未配置企业微信自建应用）"
        return f"无法送达：{why}，智能机器人不能主动向{where}发消息"
    if channel == "card_update":  # a card of another platform: its response code is "<platform>:<code>"
        own = senders.get(str(p.get("response_code", "")).split(":", 1)[0] + "_card_update")
        if own is not None:
            return Route("card_update", own)
    sender = senders.get(channel)
    if sender is None:
        return f"无法送达：未配置“{channel}”通道所属的平台（{_NEEDS.get(channel, channel)}）"
    if channel == "bridge":
        if p.get("type") in BRIDGE_INSTRUCTIONS:
            return Route("bridge_instruction", sender)
        return Route("bridge_group" if bridge_group else "bridge_user", sender)
    return Route(channel, sender)


_NEEDS = {"user": "企业微信自建应用 QUNZHI_WECOM_*", "appchat": "企业微信自建应用 QUNZHI_WECOM_*",
          "card_update": "企业微信自建应用 QUNZHI_WECOM_*", "bridge": "QUNZHI_BRIDGE_URL 与 QUNZHI_BRIDGE_SECRET",
          "feishu": "飞书自建应用 QUNZHI_FEISHU_*", "feishu_chat": "飞书自建应用 QUNZHI_FEISHU_*",
          "feishu_card": "飞书自建应用 QUNZHI_FEISHU_*",
          "dingtalk": "钉钉 QUNZHI_DINGTALK_APP_KEY 与 QUNZHI_DINGTALK_APP_SECRET"}


def deliver(r: Route, row):
    """One outbox row → one call of its route's sender (returns the SendResult)."""
    p = row.payload or {}
    s = r.sender
    text = p.get("text", "")
    if r.how in ("card_update", "feishu_card"):
        return s.update_card(p["response_code"], p["card"])
    if r.how == "feishu_chat":
        return s.send_group_card(row.recipient, p["card"]) if p.get("card") else s.send_group_text(row.recipient, text)
    if r.how == "appchat":
        return s.appchat_send_text(row.recipient, text)
    if r.how == "aibot":
        if p.get("card"):
            return s.respond_card(p["response_url"], p["card"])
        if p.get("markdown"):
            return s.respond_markdown(p["response_url"], text)
        return s.respond_text(p["response_url"], text)
    if r.how == "bridge_instruction":
        return s.post(p)
    if r.how == "bridge_group":  # a bridge cannot show cards: their text goes
        return s.send_group_text(row.recipient, text, instruction_id=f"outbox-{row.id}")
    if r.how == "bridge_user":
        return s.send_user_text(r.to or row.recipient, text, instruction_id=f"outbox-{row.id}")
    to = [row.recipient]
    if p.get("card"):
        return s.send_card(to, p["card"])
    if p.get("markdown"):
        return s.send_markdown(to, text)
    return s.send_text(to, text)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)
