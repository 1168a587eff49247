"""Every governance rule, registered once: :data:`RULES`.

A rule is a plain function (in ``governance/rules_*.py``) and the finding kinds it produces; each
kind is declared here with its code, the word people read for it and what it leads to. Everything
else is derived from this list: the scan and its order (``governance.scan``), the rules refreshed
for one group after a command (``PER_GROUP_KINDS``), the lifecycle's kinds (which warn, which lead
to dissolution, which a 保留 exempts), the finding-kind labels (``governance.labels.FINDING_KINDS``)
and the weekly digest's line of open findings (``storage.reports``).

**Adding a rule** is writing its function and adding one entry to :data:`RULES`.

Two shapes of rule:

* per group: ``check(group, now, params, today) -> Finding | None``, one group at a time (cheap
  for a few groups: refreshed right after a command changed them);
* over the snapshot: ``check(snapshot) -> Iterable[Finding]`` with a :class:`Snapshot` (the
  member-set rules need every group).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from governance.model import Finding, GroupFacts, Params
from governance.rules_activity import expired, overloaded_members, unregistered, zombie
from governance.rules_members import duplicates_and_overlaps, rebounds


@dataclass(frozen=True)
class Kind:
    """A finding kind: its stored code, its Chinese label, and what it leads to."""

    code: str
    label: str
    warns: bool = False        # an active group with it is warned (then dissolved or merged by hand)
    dissolves: bool = False    # a warned group with it is dissolved once the grace period is over
    kept_exempt: bool = False  # a kept group (保留, ``kept_until > now``) ignores it
    digest: str | None = None  # counted in the weekly digest, with this unit after the number ("对");
                               # None: not in the digest's line


@dataclass(frozen=True)
class Snapshot:
    """What a whole-snapshot rule sees."""

    groups: list[GroupFacts]
    dissolved: list[GroupFacts]
    now: datetime
    params: Params
    today: date | None = None


@dataclass(frozen=True)
class Rule:
    kinds: tuple[Kind, ...]
    per_group: Callable[[GroupFacts, datetime, Params, date | None], Finding | None] | None = None
    over_snapshot: Callable[[Snapshot], Iterable[Finding]] | None = field(default=None)


RULES: tuple[Rule, ...] = (
    Rule((Kind("zombie", "僵尸群", warns=True, dissolves=True, kept_exempt=True, digest=""),),
         per_group=lambda g, now, params, today: zombie(g, now, params)),
    Rule((Kind("duplicate", "重复群", warns=True, kept_exempt=True, digest=" 对"),
          Kind("overlap", "交叉群", warns=True, kept_exempt=True, digest="")),
         over_snapshot=lambda s: duplicates_and_overlaps(s.groups, s.now, s.params)),
    Rule((Kind("expired", "到期未解散", warns=True, dissolves=True, digest=""),), per_group=expired),
    Rule((Kind("unregistered", "未登记", digest=""),),
         per_group=lambda g, now, params, today: unregistered(g, now, params)),
    Rule((Kind("overloaded_member", "入群过多的干部"),),
         over_snapshot=lambda s: overloaded_members(s.groups, s.params)),
    Rule((Kind("rebound", "反弹回潮"),),
         over_snapshot=lambda s: rebounds(s.groups, s.dissolved, s.now, s.params)),
)

#: Finding kinds no scan rule produces: their own source writes and resolves them
#: (``storage.feedback`` writes ``useless`` from members' anonymous votes).
OWN_CONDITION: tuple[Kind, ...] = (Kind("useless", "成员认为没用"),)

KINDS: tuple[Kind, ...] = tuple(k for r in RULES for k in r.kinds)  # in scan order
FINDING_KINDS: tuple[str, ...] = tuple(k.code for k in KINDS)
PER_GROUP_KINDS: tuple[str, ...] = tuple(k.code for r in RULES if r.per_group for k in r.kinds)
WARN_KINDS = frozenset(k.code for k in KINDS if k.warns)
AUTO_DISSOLVE_KINDS = frozenset(k.code for k in KINDS if k.dissolves)
KEEP_EXEMPT_KINDS = frozenset(k.code for k in KINDS if k.kept_exempt)
LABELS: dict[str, str] = {k.code: k.label for k in (*KINDS, *OWN_CONDITION)}
