"""What a platform lets the bot do to a group, as plain data: the vocabulary and the rule that picks
a group's capabilities from a table. Which platform can do what is the platforms' to declare
(``platforms.capabilities.table(settings)``: the platforms configured here); the caller (the
scheduler, the web app, a command through ``handlers.context.Services``) passes that table into
``storage.lifecycle``, which never imports a platform. The platform steps themselves are taken
by the scheduler through the platform's sender (``scheduler.lifecycle``).

==========  ===============================================
method      how a dissolution happens
==========  ===============================================
appchat     final notice in the group, members removed, renamed ``[已解散]…``; restore re-adds
            members and renames back
bridge      a ``dissolve`` instruction event to the bridge (outbox channel ``bridge``); done when
            the bridge confirms (``dissolve_confirmed``)
order       a dissolution order to the owner with a deadline; escalated to the commission when it
            passes (a platform not in the table, any group only known from the ledger)
==========  ===============================================

Pure (no I/O): every layer may import it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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

#: platform → what the bot can do to a group on it (only the platforms configured here)
Table = Mapping[str, Capabilities]


def resolve(table: Table, platform: str | None, *, source: str | None = None) -> Capabilities:
    """The capabilities of a group on ``platform`` (``source``: how the bot learnt of it). A group
    only known from the ledger is never acted on; a platform not in the table gets an order."""
    if source == "ledger":
        return ORDER_CAPS
    return table.get((platform or "").lower(), ORDER_CAPS)
