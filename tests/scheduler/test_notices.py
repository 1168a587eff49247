"""The attention budget: several reminders merged into one message; working time; holds."""
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from governance.worktime import WorkTime
from storage.models import Notice, OutboxMessage
from collections import defaultdict

from sqlalchemy import func, select

from storage import premises
from storage.models import Notice
from storage.notices import DELIVERED, deliver_due_notices, used_budget, week_start
from storage.outbox import notify

SH = ZoneInfo("Asia/Shanghai")
WT = WorkTime()


def budget_overview(session, now, wt) -> dict[str, dict[str, int]]:
    """Per person this week: messages used, notices held, notices merged (for the dashboard)."""
    start = week_start(now, wt)
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"messages": 0, "held": 0, "merged": 0})
    for pid, n in session.execute(select(Notice.person_id, func.count(func.distinct(Notice.outbox_id)))
                                  .where(Notice.status.in_(DELIVERED), Notice.decided_at >= start,
                                         Notice.kind != premises.CORRECTION)
                                  .group_by(Notice.person_id)):
        out[pid]["messages"] = n
    for pid, status, n in session.execute(select(Notice.person_id, Notice.status, func.count())
                                          .where(Notice.status.in_(("held", "merged")), Notice.decided_at >= start)
                                          .group_by(Notice.person_id, Notice.status)):
        out[pid][status] = n
    return dict(out)


def _notices(db, now, person, n, **kw):
    with db.session() as s:
        for i in range(n):
            notify(s, person_id=person, kind="expiry", text=f"提醒{i}", at=now, group_id=f"g{i}",
                   dedupe_key=f"{person}:{i}:{now.isoformat()}", **kw)


def test_several_reminders_merge_into_one_message(db):
    now = datetime(2026, 11, 24, 10, tzinfo=SH)
    _notices(db, now, "zhang", 3)
    _notices(db, now, "li", 1)
    with db.session() as s:
        st = deliver_due_notices(s, now=now, budget=2, wt=WT)
    assert st.messages == 2 and st.merged == 3 and st.sent == 1
    with db.session() as s:
        out = s.execute(select(OutboxMessage).where(OutboxMessage.recipient == "zhang")).scalars().all()
        assert len(out) == 1
        assert all(f"提醒{i}" in out[0].payload["text"] for i in range(3))
        ns = s.execute(select(Notice).where(Notice.person_id == "zhang")).scalars().all()
        assert {n.status for n in ns} == {"merged"} and {n.outbox_id for n in ns} == {out[0].id}
        assert used_budget(s, "zhang", now, WT) == 1


def test_outside_working_time_is_held_then_sent(db):
    sat = datetime(2026, 11, 28, 10, tzinfo=SH)
    _notices(db, sat, "zhang", 2)
    with db.session() as s:
        st = deliver_due_notices(s, now=sat, budget=2, wt=WT)
    assert st.messages == 0 and st.held == 2
    with db.session() as s:
        assert s.execute(select(OutboxMessage)).first() is None
        assert {n.status for n in s.execute(select(Notice)).scalars()} == {"held"}
    monday = datetime(2026, 11, 30, 9, 5, tzinfo=SH)
    with db.session() as s:
        st = deliver_due_notices(s, now=monday, budget=2, wt=WT)
    assert st.messages == 1 and st.merged == 2


def test_budget_caps_messages_per_week_and_urgent_waits(db):
    now = datetime(2026, 11, 24, 10, tzinfo=SH)
    for k in range(3):
        t = now + timedelta(hours=k)
        _notices(db, t, "zhang", 1, urgent=(k == 2))
        with db.session() as s:
            deliver_due_notices(s, now=t, budget=2, wt=WT)
    with db.session() as s:
        assert s.execute(select(OutboxMessage)).scalars().all().__len__() == 2
        held = s.execute(select(Notice).where(Notice.status == "held")).scalars().all()
        assert len(held) == 1 and held[0].urgent
        assert budget_overview(s, now + timedelta(hours=3), WT)["zhang"] == {"messages": 2, "held": 1, "merged": 0}
    nxt = datetime(2026, 11, 30, 9, 1, tzinfo=SH)
    with db.session() as s:
        assert deliver_due_notices(s, now=nxt, budget=2, wt=WT).messages == 1
