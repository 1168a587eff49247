"""Plain data for the governance rules: facts about a group in, findings out.

Everything here is immutable input (:class:`GroupFacts`, :class:`Params`) or a plain
result (:class:`Finding`).  No I/O, no clock: callers pass ``now``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime

#: Statuses in which a group still exists in the chat platform.
LIVE_STATUSES = frozenset({"active", "warned"})

KEY_MAX = 200  # findings.key is VARCHAR(300); leave room

@dataclass(frozen=True, slots=True)
class GroupFacts:
    """What the bot knows about one work group at scan time."""

    id: str
    name: str
    platform: str
    owner_id: str | None
    unit: str | None
    category: str | None
    purpose: str | None
    protected: bool
    registered: bool
    temporary: bool
    created_at: datetime  # aware
    expires_at: date | None  # temporary group's end date (last valid day, inclusive)
    done_at: datetime | None  # owner said 完成
    status: str  # "active" | "warned" | "dissolved" | "purged" | "merged"
    last_work_at: datetime | None  # last substantive (non-ritual) message
    last_message_at: datetime | None
    message_count: int
    ritual_count: int
    member_ids: frozenset[str]
    kept_until: datetime | None = None  # owner answered 保留: exempt until then
    dissolved_at: datetime | None = None
    first_seen_at: datetime | None = None  # when the bot first saw it
    #: start of the bot's observation established by data, not by the wall clock: the earliest
    #: start of a message archive's coverage (``qunzhi import messages``); None if none covered it
    observed_since: datetime | None = None
    #: False for a group without any membership source (registered in a private chat, no ledger
    #: member list, never seen by an adapter): it is judged only once observed (``observed_since``)
    members_known: bool = True
    #: what the bot sees of the group's traffic (``groups.activity_source``: full, mentions, counts,
    #: archive, none; None: not recorded yet); shown in every idle finding so "not seen" is not "silent"
    activity_source: str | None = None
    #: ``counts`` groups: (day, messages) per day imported within the zombie window (专属钉钉 activeGroups;
    #: a day the import covered without a row for the group had no message) and the first day imported
    daily_counts: tuple[tuple[date, int], ...] = ()
    counts_since: date | None = None

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES

    def kept(self, now: datetime) -> bool:
        """True while the owner's 保留 answer still exempts the group from proposals."""
        return self.kept_until is not None and self.kept_until > now


@dataclass(frozen=True)
class Params:
    """Tunable thresholds (county policy).  Fractions are compared exactly."""

    zombie_days: int = 30
    duplicate_jaccard: float = 0.8
    overlap_containment: float = 0.9
    max_groups_per_person: int = 20
    unregistered_grace_days: int = 7
    rebound_days: int = 90
    rebound_name_similarity: float = 0.8
    grace_days: int = 7
    restore_days: int = 30
    #: ``counts`` groups (daily message counts without content): at most this many messages within
    #: ``zombie_days`` is still idle (a handful of 收到 after a warning does not revive a group)
    counts_idle_messages: int = 10
    keep_days: int = 90
    #: groups with fewer members are ignored by duplicate/overlap/rebound-by-members
    min_members_for_similarity: int = 3


@dataclass
class Finding:
    """One observation a rule makes.  ``reasons`` are Chinese, shown to people."""

    kind: str  # a finding kind code (governance.rules.KINDS)
    group_ids: list[str]
    person_ids: list[str]
    score: float
    action: str  # warn|dissolve|merge|review|none (labels: governance.labels.ACTIONS)
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "group_ids": list(self.group_ids),
            "person_ids": list(self.person_ids),
            "score": self.score,
            "action": self.action,
            "reasons": list(self.reasons),
        }

    @property
    def key(self) -> str:
        """Stable identity across scans: kind + sorted group ids + sorted person ids.

        Group order inside ``group_ids`` carries meaning (merge source first) but the
        key ignores it, so a pair whose suggested target flips is still the same finding.
        """
        groups = ",".join(sorted(self.group_ids))
        persons = ",".join(sorted(self.person_ids))
        key = f"{self.kind}|{groups}|{persons}"
        if len(key) > KEY_MAX:
            # a person in many groups or a large duplicate cluster: findings.key is VARCHAR(300)
            # and PostgreSQL refuses longer values, so long keys become a stable digest
            key = f"{self.kind}|sha1:{hashlib.sha1(key.encode()).hexdigest()}"
        return key
