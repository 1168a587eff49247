"""The signed bridge for platforms without an official API (personal WeChat groups): events in
(``inbound``), instructions out (``sender``), the protocol in ``BRIDGE.md``; ``platform`` says what it
can do."""
from __future__ import annotations

from platforms.base import BRIDGE, Capabilities, PlatformBase, startup_line
from storage.repo import NOT_BRIDGED

# A ``dissolve`` instruction to the bridge (outbox channel ``bridge``); done when the bridge confirms
# (``dissolve_confirmed``). The bridge cannot rename, remove members, undo it or show cards.
CAPABILITIES = Capabilities(BRIDGE, confirms=True, activity="full")  # the bridge forwards every group message


class BridgePlatform(PlatformBase):
    name = "bridge"
    title = "桥接（个人微信等）"
    inbound = "platforms.bridge.inbound"
    channels = ("bridge",)
    capabilities = CAPABILITIES
    reply_deadline = 4.0

    def owns(self, platform: str | None) -> bool:
        """Every platform the bridge carries (``wechat`` …): ids scoped by their platform."""
        return bool(platform) and platform not in NOT_BRIDGED

    def configured(self, settings) -> bool:
        return settings.bridge.configured

    def acts(self, settings) -> bool:
        return settings.bridge.sends

    def sender(self, settings):
        if not settings.bridge.sends:
            return None
        from platforms.bridge.sender import BridgeSender

        return BridgeSender(settings.bridge.url, settings.bridge.secret)

    def describe(self, settings, *, host: str, port: int) -> str:
        sends = ("群消息和解散指令（签名后发往 QUNZHI_BRIDGE_URL）" if settings.bridge.sends
                 else "无（未配置 QUNZHI_BRIDGE_URL，群消息和解散指令发不出去）")
        return startup_line(self.title, self.configured(settings), "签名的群消息和成员事件（/bridge/events）", sends,
                            missing="QUNZHI_BRIDGE_SECRET")


platform = BridgePlatform()
