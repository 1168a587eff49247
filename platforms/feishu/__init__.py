"""Feishu / Lark self-built app (飞书自建应用): event and card callbacks (``inbound``), messages,
cards and group operations (``sender``, through ``lark-oapi``), callback crypto (``crypto``);
``platform`` says what it can do. Set-up: README.md in this folder.

What the bot can do to a group depends on who owns it: a group the bot created (``建群``, with
``im:chat:operate_as_owner``) or owns can be renamed, emptied, refilled and really disbanded
(``DELETE /open-apis/im/v1/chats/:chat_id``: the purge). For a group owned by a person, Feishu
answers 232017 and the lifecycle falls back to a dissolution order to the owner (Feishu documents
no way to hand a group's ownership to a bot: README.md).
"""
from __future__ import annotations

from dataclasses import replace

from platforms.base import APPCHAT, Capabilities, PlatformBase, startup_line

# Soft dissolve as an app group: final notice, members removed (snapshot), renamed [已解散]…;
# restore re-adds them and renames back; the purge really disbands. Activity: what the app's
# scopes let it see (``capabilities_for``): only @-mentions unless im:message.group_msg is granted.
CAPABILITIES = Capabilities(APPCHAT, remove_members=True, rename=True, restore=True, list_members=True, cards=True,
                            purge=True, create=True, list_groups=True, activity="mentions")


class FeishuPlatform(PlatformBase):
    name = "feishu"
    title = "飞书自建应用"
    inbound = "platforms.feishu.inbound"
    channels = ("feishu", "feishu_chat", "feishu_card")
    capabilities = CAPABILITIES
    # Feishu wants a card callback answered within 3 s (an event within 3 s too, else it retries):
    # a 503 must leave before that
    reply_deadline = 2.5

    def capabilities_for(self, settings) -> Capabilities:
        return replace(self.capabilities, activity=settings.feishu.activity)

    def configured(self, settings) -> bool:
        return settings.feishu.configured

    def acts(self, settings) -> bool:
        return settings.feishu.sends

    def sender(self, settings):
        if not settings.feishu.sends:
            return None
        from platforms.feishu.sender import FeishuSender

        return FeishuSender(settings)

    def describe(self, settings, *, host: str, port: int) -> str:
        fs = settings.feishu
        if fs.configured:
            from platforms.feishu.crypto import warm_up

            warm_up()  # the SDK takes seconds to import: before the first callback, not during it
        receives = ("群内全部消息（已开通 im:message.group_msg）" if fs.group_msg_scope else "群里 @机器人 的消息（未开通 im:message.group_msg，活跃度仅为@消息）")
        receives += "、单聊消息、成员进出与群变更事件和卡片点击（/feishu/callback）"
        sends = ("消息与卡片；本应用建的群可发通知、移出成员、改名、解散" if fs.sends
                 else "无（未配置 QUNZHI_FEISHU_APP_ID 与 QUNZHI_FEISHU_APP_SECRET）")
        return startup_line(self.title, self.configured(settings), receives, sends,
                            missing="QUNZHI_FEISHU_ENCRYPT_KEY、QUNZHI_FEISHU_VERIFICATION_TOKEN")


platform = FeishuPlatform()
