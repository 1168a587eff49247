"""Who may use a command, declared on it as NoneBot's matchers declare ``permission=``.

    @command("续期", target=named_group, permission=OWNER | ADMIN | UNIT_ADMIN)

Dispatch checks the permission (against the group the command names, when it names one) before
the callback runs; a refusal changes nothing and says who may act, in the same words everywhere.
The roles are the ``persons.role`` codes (``governance.labels.ROLES``) plus ``owner``, the owner
of the group acted on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from governance import labels
from governance.events import Reply
from storage import repo
from storage.models import Group, Person

if TYPE_CHECKING:
    from handlers.context import Context


@dataclass(frozen=True)
class Permission:
    """A set of roles, any of which allows; combine with ``|``."""

    roles: frozenset[str]

    def __or__(self, other: "Permission") -> "Permission":
        return Permission(self.roles | other.roles)

    def allows(self, person: Person, group: Group | None = None) -> bool:
        """Whether ``person`` may act (on ``group``; without a group: on some group of theirs)."""
        role = person.role
        if role in self.roles and role in ("admin", "commission"):
            return True
        if ("unit_admin" in self.roles and role == "unit_admin" and person.unit
                and (group is None or group.unit == person.unit)):
            return True
        return "owner" in self.roles and group is not None and group.owner_id == person.id

    def may_ever(self, person: Person) -> bool:
        """Whether ``person`` may use the command on some group (anyone may own one): what 帮助 lists."""
        return "owner" in self.roles or self.allows(person)

    def refusal(self, ctx: "Context", group: Group | None = None) -> Reply:
        """What a person who may not act is told."""
        if "owner" in self.roles and group is not None:
            owner = repo.display_name(ctx.session, group.owner_id) if group.owner_id else "未登记"
            return Reply(f"只有群主（{owner}）或管理员可以操作这个群。")
        if self.roles <= {"admin", "unit_admin"}:
            unit = f"或“{group.unit}”的单位管理员" if group is not None and group.unit else ""
            return Reply(f"只有管理员{unit}可以进行这项操作。")
        who = "和".join(labels.role(r) for r in sorted(self.roles - {"owner"}, key=list(labels.ROLES).index))
        return Reply(f"抱歉，这项操作只向{who}开放。")


ADMIN = Permission(frozenset({"admin"}))
UNIT_ADMIN = Permission(frozenset({"unit_admin"}))  # of the group's unit
COMMISSION = Permission(frozenset({"commission"}))
OWNER = Permission(frozenset({"owner"}))  # of the group acted on

CHANGERS = OWNER | ADMIN | UNIT_ADMIN   # who may change a group (保留、续期、完成、恢复、报备 of an owned group)
ADMINISTRATORS = ADMIN | UNIT_ADMIN     # who may administer a group (合并、保护、取消保护)
VIEWERS = COMMISSION | ADMIN            # who may read the dashboard (看板)
