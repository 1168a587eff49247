"""A sender whose process dies right after the platform accepted a message (before the outbox
commits it): the real call is made, then ``exc`` (a BaseException) is raised."""
from __future__ import annotations

SENDING = {"send_text", "send_markdown", "send_card", "update_card", "appchat_send_text", "respond",
           "respond_text", "respond_markdown", "respond_card", "post", "send_group_text", "send_user_text",
           "group_notice", "group_remove", "group_add", "group_rename", "group_disband", "group_create"}


class CrashAfterSend:
    def __init__(self, sender, exc: type[BaseException]):
        self._sender, self._exc = sender, exc

    def __getattr__(self, name):
        attr = getattr(self._sender, name)
        if name not in SENDING:
            return attr

        def sent_then_died(*args, **kwargs):
            attr(*args, **kwargs)
            raise self._exc()

        return sent_then_died
