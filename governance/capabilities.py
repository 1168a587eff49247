"""What each platform lets the bot do to a group, declared in one place.

The lifecycle (``storage.lifecycle``) asks :func:`for_group` how a group can be dissolved
and restored; it never tests platform names itself.  The platform steps themselves are
taken by the scheduler through the platform's sender (``scheduler.lifecycle``).

=================================  ==========  ===============================================
platform / source                  method      how a dissolution happens
=================================  ==========  ===============================================
``wecom`` (app-created appchat)    appchat     final notice in the group, members removed,
                                               renamed ``[已解散]…``; restore re-adds members
                                               and renames back
``wechat`` / ``bridge`` with the   bridge      a ``dissolve`` instruction event to the bridge
bridge configured                              (outbox channel ``bridge``); done when the bridge
                                               confirms (``dissolve_confirmed``)
``ledger``, ``aibot``, ``local``,  order       a dissolution order to the owner with a deadline;
personal WeChat without bridge,                escalated to the commission when it passes
``wecom`` groups only known from
the ledger
=================================  ==========  ===============================================

This module is pure (no I/O) so every layer may import it: storage decides the method with it
without importing a platform.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from governance.lifecycle import APPCHAT, BRIDGE, ORDER


@dataclass(frozen=True)
class Capabilities:
    method: str              # appchat | bridge | order
    remove_members: bool     # the bot can take members out
    rename: bool             # the bot can rename the group
    restore: bool            # the bot can undo the dissolution on the platform
    confirms: bool           # the platform confirms asynchronously (bridge)

    @property
    def automatic(self) -> bool:
        return self.method != ORDER


APPCHAT_CAPS = Capabilities(APPCHAT, remove_members=True, rename=True, restore=True, confirms=False)
BRIDGE_CAPS = Capabilities(BRIDGE, remove_members=False, rename=False, restore=False, confirms=True)
ORDER_CAPS = Capabilities(ORDER, remove_members=False, rename=False, restore=False, confirms=False)


def for_platform(platform: str | None, *, source: str | None = None, bridge_enabled: bool = True) -> Capabilities:
    """Capabilities of a group on ``platform`` (``source`` is how the bot learnt of it)."""
    p = (platform or "").lower()
    if p == "wecom" and source != "ledger":
        return APPCHAT_CAPS
    if p in ("wechat", "bridge") and bridge_enabled and source != "ledger":
        return BRIDGE_CAPS
    return ORDER_CAPS


def bridge_enabled(settings: Any = None) -> bool:
    """The bridge counts as available when ``settings.bridge_secret`` is set (or no settings
    are given)."""
    return True if settings is None else bool(getattr(settings, "bridge_secret", ""))


def for_group(group: Any, settings: Any = None) -> Capabilities:
    """Capabilities for a ``storage.models.Group`` (or anything with ``platform``/``source``)."""
    return for_platform(getattr(group, "platform", None), source=getattr(group, "source", None),
                        bridge_enabled=bridge_enabled(settings))
