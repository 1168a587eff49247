"""Hand-made GroupFacts for the governance tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from governance.model import GroupFacts

CST = timezone(timedelta(hours=8))
NOW = datetime(2024, 6, 1, 10, 0, tzinfo=CST)


def members(prefix: str, n: int, start: int = 0) -> frozenset[str]:
    return frozenset(f"{prefix}{i}" for i in range(start, start + n))


def group(gid: str = "g1", **kw) -> GroupFacts:
    base = dict(
        id=gid,
        name=f"群{gid}",
        platform="wecom",
        owner_id="owner",
        unit="城关镇",
        category=None,
        purpose=None,
        protected=False,
        registered=True,
        temporary=False,
        created_at=NOW - timedelta(days=365),
        expires_at=None,
        done_at=None,
        status="active",
        last_work_at=NOW - timedelta(days=1),
        last_message_at=NOW - timedelta(days=1),
        message_count=100,
        ritual_count=10,
        member_ids=members("p", 10),
    )
    base.update(kw)
    return GroupFacts(**base)
