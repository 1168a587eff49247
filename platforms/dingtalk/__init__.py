"""DingTalk (钉钉) enterprise-internal app with a robot: callbacks (``inbound``), Stream mode
(``stream``), messages, cards and scene groups (``sender``); ``platform`` says what it can do.

What the bot can do to a group (see README.md in this folder):

* **scene groups (场景群)** — the ones it creates (建群) from the app's template: notice, remove
  members, rename, re-add and rename back (the soft stage and the restore), and the real disband
  (``/v1.0/im/chat/scenegroup/disband``) for the purge.
* **ordinary groups** — no API acts on them: the scene-group calls answer an error and the
  lifecycle falls back to a dissolution order to the owner (``governance.lifecycle``: appchat →
  order).
* **activity** — the robot hears @-mentions and direct chats only (``mentions``); with 专属钉钉
  (``QUNZHI_DINGTALK_EXCLUSIVE``) the daily job imports per-group message counts (``counts``).
* **no group listing** for the robot (``list_groups`` False).
"""
from __future__ import annotations

from platforms.base import APPCHAT, Capabilities, PlatformBase, startup_line

CAPABILITIES = Capabilities(APPCHAT, remove_members=True, rename=True, restore=True, list_members=True, cards=True,
                            purge=True, create=True, list_groups=False, activity="mentions")


class DingTalkPlatform(PlatformBase):
    name = "dingtalk"
    title = "钉钉企业内部应用机器人"
    inbound = "platforms.dingtalk.inbound"
    channels = ("dingtalk", "dingtalk_card_update")
    capabilities = CAPABILITIES
    reply_deadline = 4.0  # DingTalk waits a few seconds for the robot's answer

    def configured(self, settings) -> bool:
        return settings.dingtalk.configured

    def sender(self, settings):
        if not settings.dingtalk.configured:
            return None
        from platforms.dingtalk.sender import DingTalkSender

        return DingTalkSender(settings)

    def start_stream(self, app, loop):
        """Stream mode when configured (``qunzhi serve``): the running connection, else None."""
        if not (settings := app.state.runtime.settings).dingtalk.stream or not settings.dingtalk.configured:
            return None
        from platforms.dingtalk.stream import start

        return start(app, loop)

    def counts_enabled(self, settings) -> bool:
        """专属钉钉's daily counts are imported here (``scheduler.jobs.import_activity_counts``)."""
        return settings.dingtalk.configured and settings.dingtalk.exclusive

    def activity_counts(self, sender, day):
        """One day's per-group message counts and last-active times (``platforms.dingtalk.counts``)."""
        from platforms.dingtalk.counts import fetch_day

        return fetch_day(sender, day)

    def describe(self, settings, *, host: str, port: int) -> str:
        d = settings.dingtalk
        how = "Stream 长连接（无需公网地址）" if d.stream else "/dingtalk/robot、/dingtalk/card"
        receives = f"群里@机器人的消息、单聊消息和卡片点击（{how}）"
        if d.events:
            receives += "，群成员与群名变更事件（/dingtalk/events）"
        if d.exclusive:
            receives += "，专属钉钉每日各群消息条数"
        sends = "单聊消息和互动卡片；场景群可发通知、移出成员、改名、解散；普通群改为通知群主解散"
        return startup_line(self.title, self.configured(settings), receives, sends,
                            missing="QUNZHI_DINGTALK_APP_KEY、QUNZHI_DINGTALK_APP_SECRET")


platform = DingTalkPlatform()
