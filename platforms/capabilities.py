"""What the bot can do to a group, by the platform it is on: the lookup, and the table of the
platforms that can act here (``table(settings)``), the plain data ``storage.lifecycle`` is given (it
never imports a platform; the type and the lookup rule are ``governance.capabilities``). Each
platform declares its own ``capabilities`` in its folder (``platforms/<name>/__init__.py``); this
module never tests platform names.

=================================  ==========  ===============================================
platform / source                  method      how a dissolution happens
=================================  ==========  ===============================================
``wecom`` (app-created appchat)    appchat     final notice in the group, members removed,
with the app's secret                          renamed ``[已解散]…``; restore re-adds members
                                               and renames back
``dingtalk`` scene groups          appchat     the same steps through ``GroupOps`` (scene-group
(created by the bot)                           APIs); the purge really disbands; an ordinary
                                               DingTalk group refuses them → an order
a bridged platform (``wechat``…)   bridge      a ``dissolve`` instruction event to the bridge
with QUNZHI_BRIDGE_SECRET and URL              (outbox channel ``bridge``); done when the bridge
                                               confirms (``dissolve_confirmed``)
``feishu`` (a group the bot        appchat     the same soft steps through the Feishu app; the
created or owns)                               purge really disbands (``DELETE …/chats/:id``);
                                               another group: 232017, an order to its owner
``ledger``, ``aibot``, ``local``,  order       a dissolution order to the owner with a deadline;
a platform that cannot act here,               escalated to the commission when it passes
any group only known from the ledger
=================================  ==========  ===============================================

No I/O: the platform folders' ``__init__`` modules are small, so this may be called often.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from governance.capabilities import ORDER_CAPS, Capabilities, resolve
from platforms.registry import all_platforms, owner_of


class _Acting(Mapping):
    """Platform value → capabilities, for the platforms that can act here (``Platform.acts``);
    a bridged platform's values (``wechat``…) are found through the registry's ``owner_of``."""

    def __init__(self, settings: Any):
        self.settings = settings

    def __getitem__(self, platform: str) -> Capabilities:
        owner = owner_of((platform or "").lower())
        if owner is None or not (self.settings is None or owner.acts(self.settings)):
            raise KeyError(platform)
        if self.settings is not None and hasattr(owner, "capabilities_for"):
            return owner.capabilities_for(self.settings)
        return owner.capabilities

    def __iter__(self) -> Iterator[str]:
        return (p.name for p in all_platforms() if self.settings is None or p.acts(self.settings))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def table(settings: Any = None) -> Mapping[str, Capabilities]:
    """The platforms that can act here and their capabilities (all of them without settings)."""
    return _Acting(settings)


def for_platform(platform: str | None, *, source: str | None = None, configured: bool = True) -> Capabilities:
    """Capabilities of a group on ``platform`` (``source`` is how the bot learnt of it; a group only
    known from the ledger is never acted on; ``configured``: the platform can act here)."""
    return resolve(table(None), platform, source=source) if configured else ORDER_CAPS


def default_activity(platform: str | None) -> str | None:
    """What the bot sees of a group on ``platform`` by default (its ``Capabilities.activity``), or
    None for a value no registered platform owns (``storage.activity`` handles ledger/archive)."""
    owner = owner_of((platform or "").lower())
    return owner.capabilities.activity if owner is not None else None


def for_group(group: Any, settings: Any = None) -> Capabilities:
    """Capabilities for a ``storage.models.Group`` (or anything with ``platform``/``source``): the
    group's platform counts when ``settings`` say it can act (a bridge without
    ``QUNZHI_BRIDGE_URL``, or WeCom without its app secret, cannot carry out a dissolution, so the
    owner gets an order instead), or when no settings are given."""
    return resolve(table(settings), getattr(group, "platform", None), source=getattr(group, "source", None))


# --- the README's capability table, generated from the declarations ---------------------------------
CAPABILITY_TABLE_START = "<!-- capability-table:start (generated: platforms.capabilities.markdown_table) -->"
CAPABILITY_TABLE_END = "<!-- capability-table:end -->"
_HEADERS = ("平台", "检测能看到", "解散（软）", "恢复", "清除（满恢复期）", "建群", "群同步")


def capability_row(title: str, caps: Capabilities) -> tuple[str, ...]:
    """What each step does on a platform with ``caps``, in Chinese (the README's table)."""
    from governance import labels
    from governance.lifecycle import BRIDGE

    seen = labels.label("activity_source", caps.activity)
    if caps.soft:
        dissolve = "发最后通知，记下成员名单，移出成员，改名“[已解散]…”"
        restore = "拉回名单中的成员，改回原名，发通知" if caps.restore else "恢复登记，成员由群主拉回"
        purge = ("在平台上真正解散（平台答“已解散”也算完成），记入审计" if caps.purge
                 else "平台没有解散接口：群保持清空、改名，台账注明")
    elif caps.method == BRIDGE:
        dissolve = "向桥接端发解散指令，桥接端确认后完成"
        restore = "恢复登记；平台上的群已解散，需重新建群"
        purge = "只清除记录（群已由桥接端解散）"
    else:
        dissolve = "通知群主手动解散（限期3天，逾期上报）"
        restore = "恢复登记（群由群主处理）"
        purge = "只清除记录（群由群主解散）"
    create = "可以：机器人建的临时群到期自动解散" if caps.create else "不可以"
    sync = "定时列出机器人所在的群和成员" if caps.list_groups else "不支持"
    return (title, seen, dissolve, restore, purge, create, sync)


def markdown_table() -> str:
    """The capability table of every registered platform, as the README shows it."""
    rows = [_HEADERS, tuple("---" for _ in _HEADERS)]
    rows += [capability_row(p.title, p.capabilities) for p in all_platforms()]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)
