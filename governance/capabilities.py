"""What a platform lets the bot do to a group, as plain data: the vocabulary and the rule that picks
a group's capabilities from a table. Which platform can do what is the platforms' to declare
(``platforms.capabilities.table(settings)``: the platforms configured here); the caller (the
scheduler, the web app, a command through ``handlers.context.Services``) passes that table into
``storage.lifecycle``, which never imports a platform. The platform steps themselves are taken
by the scheduler through the platform's sender (``scheduler.lifecycle``).

==========  ===============================================
method      how a dissolution happens
==========  ===============================================
appchat     the soft dissolve (any platform whose bot removes members and renames, through its
            sender's ``GroupOps``; the code is historical): final notice in the group, members
            removed, renamed ``[已解散]…``; restore re-adds members and renames back; after
            ``restore_days`` the purge disbands it where ``purge`` (else it stays emptied)
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
    """What the bot can do to a group on a platform (each platform declares its own in its folder,
    ``platforms/<name>/__init__.py``). ``method`` is how a dissolution happens (kept on the group
    as ``dissolve_method``)."""
    method: str                   # appchat | bridge | order
    remove_members: bool = False  # the bot can take members out
    rename: bool = False          # the bot can rename the group
    restore: bool = False         # the bot can undo the dissolution on the platform
    confirms: bool = False        # the platform confirms a dissolution asynchronously (bridge)
    list_members: bool = False    # the bot can ask the platform who is in the group
    cards: bool = False           # the platform shows one-tap cards (template cards)
    purge: bool = False           # the purge really disbands the group (platforms.base.GroupOps.group_disband)
    create: bool = False          # the bot can create a group it will later dissolve (建群)
    list_groups: bool = False     # the bot can list the groups it is in (the sync job)
    activity: str = "mentions"    # what the bot sees of a group's traffic (governance.labels.ACTIVITY_SOURCES)

    @property
    def soft(self) -> bool:
        """A dissolution is the bot's own soft dissolve (final notice, members snapshotted and
        removed, renamed ``[已解散]…``; restorable): the appchat method, or any platform whose bot
        can remove members and rename (``scheduler.lifecycle`` takes the steps through the
        platform sender's ``platforms.base.GroupOps``)."""
        return self.method == APPCHAT or (self.method != BRIDGE and self.remove_members and self.rename)

    @property
    def dissolve_method(self) -> str:
        """The method recorded on a group dissolved here (``groups.dissolve_method``): ``appchat``
        (the stored code of the soft dissolve, whatever the platform), ``bridge`` or ``order``."""
        if self.soft:
            return APPCHAT
        return BRIDGE if self.method == BRIDGE else ORDER

    @property
    def disband(self) -> bool:
        """The bot can dissolve the group on the platform (directly or through the bridge)."""
        return self.method != ORDER

    @property
    def automatic(self) -> bool:
        return self.disband


ORDER_CAPS = Capabilities(ORDER)  # a group no configured platform can act on (the ledger's, for one)

#: platform → what the bot can do to a group on it (only the platforms configured here)
Table = Mapping[str, Capabilities]


def resolve(table: Table, platform: str | None, *, source: str | None = None) -> Capabilities:
    """The capabilities of a group on ``platform`` (``source``: how the bot learnt of it). A group
    only known from the ledger is never acted on; a platform not in the table gets an order."""
    if source == "ledger":
        return ORDER_CAPS
    try:
        return table[(platform or "").lower()]
    except KeyError:
        return ORDER_CAPS
