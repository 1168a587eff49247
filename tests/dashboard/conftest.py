"""A small known county state for the report, digest and dashboard tests."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from storage import audit
from storage.models import FindingRecord, FormalismReport, Group, Membership, Person, PulseResponse

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)  # Monday 10:00 Beijing; last week: 11月16日—11月22日
IN_WEEK = datetime(2026, 11, 18, 3, 0, tzinfo=timezone.utc)
BEFORE = datetime(2026, 11, 10, 3, 0, tzinfo=timezone.utc)


def _group(gid, name, unit, *, status="active", protected=False, temporary=False, registered=True, category=None):
    t = NOW - timedelta(days=200)
    return Group(id=gid, platform="wecom", name=name, unit=unit, category=category, owner_id="a", temporary=temporary,
                 protected=protected, created_at=t, first_seen_at=t, registered_at=t if registered else None,
                 status=status, member_count=0, message_count=10, ritual_count=4, keep_count=0,
                 last_work_at=t, updated_at=t, dissolved_at=IN_WEEK if status == "dissolved" else None)


def build_known_state(s) -> None:
    """4 live groups (2 protected, 1 temporary, 3 registered) + 1 dissolved; persons a(3 groups,
    城关镇), b(1, 容美镇), c(2, 容美镇), d(commission); audit: last week dissolve×2, merge, keep,
    renew, restore; one dissolve the week before."""
    for pid, name, unit, role in [("a", "张镇长", "城关镇", "cadre"), ("b", "李主任", "容美镇", "cadre"),
                                  ("c", "王干事", "容美镇", "cadre"), ("d", "赵纪委", "县纪委监委", "commission")]:
        s.add(Person(id=pid, name=name, unit=unit, role=role, created_at=NOW - timedelta(days=300)))
    s.add_all([_group("g1", "城关镇领导班子群", "城关镇", protected=True, category="领导班子群"),
               _group("g2", "城关镇机关群", "城关镇", protected=True, category="机关群"),
               _group("g3", "秋粮收购专班", "城关镇", temporary=True, category="临时群"),
               _group("g4", "防汛抗旱群", "容美镇", registered=False),
               _group("g5", "森林防火群", "容美镇", status="dissolved")])
    s.flush()
    for gid, pids in {"g1": "ac", "g2": "a", "g3": "ab", "g4": "c", "g5": "abc"}.items():
        for p in pids:
            s.add(Membership(group_id=gid, person_id=p, joined_at=NOW - timedelta(days=100)))
    s.flush()
    audit.record(s, actor="system", action="dissolve", at=BEFORE, group_id="g5", reason="上上周")
    for action, gid in [("dissolve", "g5"), ("dissolve", "g4"), ("merge", "g3"), ("keep", "g4"), ("renew", "g3"),
                        ("restore", "g4")]:
        audit.record(s, actor="a", action=action, at=IN_WEEK, group_id=gid, reason=f"测试{action}")
    for i, (kind, status) in enumerate([("zombie", "open"), ("zombie", "open"), ("duplicate", "open"),
                                        ("zombie", "resolved"), ("rebound", "open")]):
        s.add(FindingRecord(key=f"k{i}", kind=kind, group_ids=["g4", "g5"] if kind == "rebound" else ["g4"],
                            person_ids=[], score=0.9, action="warn", reasons=["45天没有工作消息", "近30天只有“收到”4条"],
                            status=status, first_seen=IN_WEEK, last_seen=IN_WEEK))
    for i, v in enumerate([3, 3, 1, 2, 2]):
        s.add(PulseResponse(id=1000 + i, period="2026-W47", unit="城关镇", value=v, voter_key=f"v{i}",
                            day=date(2026, 11, 16)))
    s.add(FormalismReport(day=date(2026, 11, 18), text="村里要求每天在群里上传入户走访照片"))
    s.flush()


@pytest.fixture
def known(db):
    with db.session() as s:
        build_known_state(s)
    return db
