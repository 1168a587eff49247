"""WeCom self-built app (企业微信自建应用): callbacks (``inbound``), message/send and appchat
(``sender``), callback crypto (``crypto``); ``platform`` says what it can do."""
from __future__ import annotations

from platforms.base import APPCHAT, Capabilities, PlatformBase, startup_line

# An app-created group chat (appchat): the bot posts the final notice, removes the members and
# renames it ``[已解散]…``; a restore re-adds the members and renames it back.
# No disband API and no list of the app's groups (purge leaves the group emptied and renamed); an app
# group can be created (建群: appchat/create). The app is not told of group traffic: mentions at best.
CAPABILITIES = Capabilities(APPCHAT, remove_members=True, rename=True, restore=True, list_members=True, cards=True,
                            purge=False, create=True, list_groups=False, activity="mentions")


class WeComPlatform(PlatformBase):
    name = "wecom"
    title = "企业微信自建应用"
    inbound = "platforms.wecom.inbound"
    channels = ("user", "appchat", "card_update")
    capabilities = CAPABILITIES
    reply_deadline = 4.0  # WeCom drops the connection after 5 s: a 503 must leave before that

    def configured(self, settings) -> bool:
        return settings.wecom.configured

    def acts(self, settings) -> bool:
        return settings.wecom.sends

    def sender(self, settings):
        if not settings.wecom.sends:
            return None
        from platforms.wecom.sender import WeComSender

        return WeComSender(settings)

    def describe(self, settings, *, host: str, port: int) -> str:
        sends = ("应用消息和模板卡片；应用群聊可建群、发通知、移出成员、改名"
                 "（解散与恢复；企业微信无解散接口，清除后群保持清空）" if settings.wecom.sends
                 else "无（未配置 QUNZHI_WECOM_SECRET，取不到 access_token）")
        return startup_line(self.title, self.configured(settings), "单聊消息、菜单和卡片点击（/wecom/callback）", sends,
                            missing="QUNZHI_WECOM_CORP_ID、QUNZHI_WECOM_TOKEN、QUNZHI_WECOM_AES_KEY")


platform = WeComPlatform()
