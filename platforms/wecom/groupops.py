"""``platforms.base.GroupOps`` over WeCom's appchat API (groups the app created: ``appchat/create``,
``appchat/update`` for the name and the members, ``appchat/get``, ``appchat/send``).

WeCom has no API to disband an appchat group and none to list the app's groups, so
``group_disband`` and ``list_groups`` raise ``PermanentSendError`` (the platform declares
``purge=False`` and ``list_groups=False``: the purge leaves the group emptied and renamed).

A mixin: any sender with the four ``appchat_*`` methods (``WeComSender`` over HTTP, the recording
sender of the demo) gets the group operations from it; :func:`group_ops` wraps a sender that only
has ``appchat_*`` (older test doubles) the same way.
"""
from __future__ import annotations

import logging
import secrets

from platforms.base import GroupInfo, GroupOps, PermanentSendError, SendResult

log = logging.getLogger("qunzhi.senders.wecom")

CHAT_ID_PREFIX = "qz"  # the chat ids 建群 gives WeCom (appchat/create takes the id from the caller)


class AppchatGroupOps:
    """The group operations of a sender that has ``appchat_send_text``, ``appchat_update``,
    ``appchat_get`` and ``appchat_create``."""

    def group_notice(self, chat_id: str, text: str) -> SendResult:
        return self.appchat_send_text(chat_id, text)

    def group_members(self, chat_id: str) -> set[str] | None:
        info = self.appchat_get(chat_id)
        info = info.get("chat_info", info) if isinstance(info, dict) else {}
        users = info.get("userlist") if isinstance(info, dict) else None
        return set(users) if isinstance(users, list) else None

    def group_remove(self, chat_id: str, user_ids: list[str]) -> SendResult:
        return self.appchat_update(chat_id, del_user_list=list(user_ids))

    def group_add(self, chat_id: str, user_ids: list[str]) -> SendResult:
        return self.appchat_update(chat_id, add_user_list=list(user_ids))

    def group_rename(self, chat_id: str, name: str) -> SendResult:
        return self.appchat_update(chat_id, name=name)

    def group_disband(self, chat_id: str) -> SendResult:
        raise PermanentSendError("appchat: 企业微信没有解散应用群聊的接口")

    def group_create(self, name: str, owner: str, user_ids: list[str]) -> str:
        members = list(dict.fromkeys([owner, *user_ids]))  # WeCom: at least two, the owner among them
        chat_id = f"{CHAT_ID_PREFIX}{secrets.token_hex(8)}"
        result = self.appchat_create(chat_id, name, owner, members)
        return str(result.msgid or chat_id)

    def list_groups(self) -> list[GroupInfo]:
        raise PermanentSendError("appchat: 企业微信没有列出应用群聊的接口")


class _Appchat(AppchatGroupOps):
    def __init__(self, sender):
        self._sender = sender

    def __getattr__(self, name):
        return getattr(self._sender, name)


def group_ops(sender) -> GroupOps | None:
    """``sender`` as ``GroupOps``: itself when it has the group methods, wrapped when it only has
    the ``appchat_*`` ones, None when it has neither (it cannot act on a group)."""
    if sender is None:
        return None
    if isinstance(sender, GroupOps):
        return sender
    if callable(getattr(sender, "appchat_update", None)):
        return _Appchat(sender)
    return None
