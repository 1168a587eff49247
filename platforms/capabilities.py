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


def for_group(group: Any, settings: Any = None) -> Capabilities:
    """Capabilities for a ``storage.models.Group`` (or anything with ``platform``/``source``): the
    group's platform counts when ``settings`` say it can act (a bridge without
    ``QUNZHI_BRIDGE_URL``, or WeCom without its app secret, cannot carry out a dissolution, so the
    owner gets an order instead), or when no settings are given."""
    return resolve(table(settings), getattr(group, "platform", None), source=getattr(group, "source", None))
