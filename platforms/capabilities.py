"""What the bot can do to a group, by the platform it is on: the lookup. Each platform declares its
own ``capabilities`` in its folder (``platforms/<name>/__init__.py``); this module never tests
platform names.

=================================  ==========  ===============================================
platform / source                  method      how a dissolution happens
=================================  ==========  ===============================================
``wecom`` (app-created appchat)    appchat     final notice in the group, members removed,
                                               renamed ``[已解散]…``; restore re-adds members
                                               and renames back
a bridged platform (``wechat``…)   bridge      a ``dissolve`` instruction event to the bridge
with the bridge configured                     (outbox channel ``bridge``); done when the bridge
                                               confirms (``dissolve_confirmed``)
``ledger``, ``aibot``, ``local``,  order       a dissolution order to the owner with a deadline;
a platform not configured, any                 escalated to the commission when it passes
group only known from the ledger
=================================  ==========  ===============================================

No I/O: the platform folders' ``__init__`` modules are small, so storage may call this lazily.
"""
from __future__ import annotations

from typing import Any

from platforms.base import APPCHAT, BRIDGE, ORDER, ORDER_CAPS, Capabilities  # noqa: F401 (the vocabulary)
from platforms.registry import owner_of


def for_platform(platform: str | None, *, source: str | None = None, configured: bool = True) -> Capabilities:
    """Capabilities of a group on ``platform`` (``source`` is how the bot learnt of it; a group only
    known from the ledger is never acted on; ``configured``: the platform is set up here)."""
    owner = owner_of((platform or "").lower())
    if owner is None or source == "ledger" or not configured:
        return ORDER_CAPS
    return owner.capabilities


def for_group(group: Any, settings: Any = None) -> Capabilities:
    """Capabilities for a ``storage.models.Group`` (or anything with ``platform``/``source``).

    The group's platform counts as configured when ``settings`` say it can act (``Platform.acts``:
    a bridge without ``QUNZHI_BRIDGE_URL``, or WeCom without its app secret, cannot carry out a
    dissolution, so the owner gets an order instead), or when no settings are given."""
    platform = (getattr(group, "platform", None) or "").lower()
    owner = owner_of(platform)
    configured = settings is None or owner is None or owner.acts(settings)
    return for_platform(platform, source=getattr(group, "source", None), configured=configured)
