"""What each platform lets the bot do to a group it runs, and which of them are configured here
(:func:`table`): the plain data ``storage.lifecycle`` is given (it never imports a platform; the
vocabulary and the lookup rule are ``governance.capabilities``).

=====================  ==========  ============================================================
platform               method      when
=====================  ==========  ============================================================
``wecom``              appchat     app-created group chats (a ledger-only group gets an order)
``wechat``, ``bridge``  bridge      with the bridge configured (``QUNZHI_BRIDGE_SECRET``)
anything else          order       ``aibot``, ``local``, ``ledger``…: an order to the owner
=====================  ==========  ============================================================
"""
from __future__ import annotations

from typing import Any

from governance.capabilities import APPCHAT_CAPS, BRIDGE_CAPS, Capabilities

#: what each platform can do to a group it runs
PLATFORM_CAPABILITIES: dict[str, Capabilities] = {"wecom": APPCHAT_CAPS, "wechat": BRIDGE_CAPS, "bridge": BRIDGE_CAPS}


def table(settings: Any = None) -> dict[str, Capabilities]:
    """The platforms configured here and their capabilities: the bridge's count when
    ``settings.bridge_secret`` is set (or no settings are given)."""
    bridge = settings is None or bool(getattr(settings, "bridge_secret", ""))
    return {p: c for p, c in PLATFORM_CAPABILITIES.items() if c is not BRIDGE_CAPS or bridge}
