"""WeCom AI bot (企业微信智能机器人): callbacks (``inbound``); ``platform`` says what it can do."""
from __future__ import annotations

from platforms.base import ORDER, Capabilities, PlatformBase, startup_line

# The AI bot sits in groups but cannot rename them, remove members or dissolve them: a dissolution
# is an order to the owner. It answers with markdown streams and template cards.
CAPABILITIES = Capabilities(ORDER, cards=True, activity="mentions")  # it hears @-mentions only


class AibotPlatform(PlatformBase):
    name = "aibot"
    title = "企业微信智能机器人"
    inbound = "platforms.aibot.inbound"
    channels = ("aibot",)
    capabilities = CAPABILITIES
    reply_deadline = 4.0  # the same five seconds as the self-built app

    def configured(self, settings) -> bool:
        return settings.aibot.configured

    def sender(self, settings):
        """Answers through each callback's ``response_url`` (once, within its hour)."""
        if not settings.aibot.configured:
            return None
        from platforms.aibot.sender import AibotSender

        return AibotSender()

    def describe(self, settings, *, host: str, port: int) -> str:
        return startup_line(self.title, self.configured(settings),
                            "群里@机器人的消息、单聊消息和卡片点击（/wecom/aibot/callback）",
                            "回调中的被动回复（文字、流式 markdown）和经回调 response_url 的回复（一小时内一次）；不能主动发消息、改名、移出成员或解散群（改为通知群主解散）",
                            missing="QUNZHI_AIBOT_TOKEN、QUNZHI_AIBOT_AES_KEY")


platform = AibotPlatform()
