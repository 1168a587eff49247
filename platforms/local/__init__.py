"""Local mode: a chat page for trying the bot without any platform (development, loopback only):
the page and its endpoints (``inbound``), the recording sender of the demo (``sender``);
``platform`` says what it can do."""
from __future__ import annotations

from platforms.base import ORDER, Capabilities, PlatformBase

CAPABILITIES = Capabilities(ORDER, activity="full")  # demo groups: nobody acts for the bot; the page shows all


class LocalPlatform(PlatformBase):
    name = "local"
    title = "本地对话页"
    inbound = "platforms.local.inbound"
    channels = ()  # replies are answered in the page; what the bot queues is shown there (/local/inbox)
    capabilities = CAPABILITIES
    # Nobody retries a click in the page: wait long for a slow laptop, then say it took too long.
    reply_deadline = 30.0

    def configured(self, settings) -> bool:
        """The settings' half of the rule (development, no credentials); the page is also only
        served on a loopback address (``Settings.local_mode_on``)."""
        return settings.local_mode

    def describe(self, settings, *, host: str, port: int) -> str:
        if settings.local_mode_on(host):
            return (f"本地模式：未配置企业微信凭据。打开 http://{host}:{port}/local 与机器人对话"
                    "（接收网页上发送的消息；回复和推送显示在网页上）。")
        if settings.local_mode:
            return (f"未配置企业微信凭据；监听地址 {host} 不是本机回环地址，本地对话页未开启"
                    "（只在 --host 127.0.0.1 时提供）。")
        return "网页对话页 /local：未开启（只在开发环境、未配置企业微信凭据且监听本机回环地址时提供），不接收也不发送。"


platform = LocalPlatform()
