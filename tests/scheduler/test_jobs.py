"""The job bodies: weekly pulse, 回头看 (look-back), advance_pending every minute, daily stats."""
from datetime import timedelta

from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

from platforms.local.sender import RecordingSender
from scheduler import jobs
from scheduler.outbox import Dispatcher
from scheduler.service import job_specs
from storage import audit, repo
from storage.models import AuditRecord, Group, Notice, OutboxMessage, PulseAsk, StatSnapshot


def _people(runtime, clock):
    """a, b: cadres in a group; jw: commission (also a member); loner: a cadre in no group."""
    with runtime.db.session() as s:
        for pid, role in (("a", "cadre"), ("b", "unit_admin"), ("jw", "commission"), ("loner", "cadre")):
            repo.get_or_create_person(s, pid, clock()).role = role
        repo.ensure_group(s, group_id="g1", platform="wecom", at=clock(), name="秋粮收购专班")
        repo.add_members(s, "g1", ("a", "b", "jw"), clock())


def _asked(runtime):
    with runtime.db.session() as s:
        rows = s.execute(select(OutboxMessage).where(OutboxMessage.kind == "pulse")).scalars().all()
        return sorted(r.recipient for r in rows)


# --- weekly pulse ------------------------------------------------------------------------------
def test_weekly_pulse_asks_members_at_most_every_two_weeks(runtime, clock):
    _people(runtime, clock)
    assert jobs.weekly_pulse(runtime) == 2  # Monday 10:00 Beijing
    assert _asked(runtime) == ["a", "b"]  # not the commission, not someone in no group
    with runtime.db.session() as s:
        row = s.execute(select(OutboxMessage).where(OutboxMessage.recipient == "a")).scalar_one()
        assert row.payload["card"]["card_type"] == "button_interaction"
        assert row.payload["card"]["task_id"].startswith("pulse:")
        assert {p.person_id: p.asked_at for p in s.execute(select(PulseAsk)).scalars()} == \
            {"a": clock(), "b": clock()}
        # the ask counts against the weekly attention budget like any other unsolicited message
        assert s.execute(select(Notice.person_id).where(Notice.kind == "pulse")).scalars().all().__len__() == 2

    sender = RecordingSender()
    d = Dispatcher(runtime.db, sender, clock=clock, workers=2, global_per_second=None)
    d.drain()
    d.close()
    assert sorted(c.args["user_ids"][0] for c in sender.of("send_card")) == ["a", "b"]

    clock.advance(days=7)  # next week: too soon
    assert jobs.weekly_pulse(runtime) == 0
    clock.advance(days=6, hours=23)  # 13 days 23 hours after the ask: still too soon
    assert jobs.weekly_pulse(runtime) == 0
    clock.advance(hours=1)  # 14 days: asked again, once each
    assert jobs.weekly_pulse(runtime) == 2
    assert _asked(runtime) == ["a", "a", "b", "b"]
    assert jobs.weekly_pulse(runtime) == 0


def test_weekly_pulse_waits_for_working_time_and_budget(runtime, clock):
    _people(runtime, clock)
    clock.advance(days=5)  # Saturday 10:00
    assert jobs.weekly_pulse(runtime) == 0
    clock.advance(days=2)  # Monday again
    budget = runtime.settings.weekly_message_budget
    with runtime.db.session() as s:  # "a" already got this week's budget of messages
        for i in range(budget):
            msg = OutboxMessage(created_at=clock(), channel="user", recipient="a", kind="digest",
                                payload={"text": "x"}, status="sent", attempts=1, next_attempt_at=clock())
            s.add(msg)
            s.flush()
            s.add(Notice(person_id="a", kind="expiry", text="x", due_at=clock(), created_at=clock(),
                         status="sent", decided_at=clock(), outbox_id=msg.id))
    assert jobs.weekly_pulse(runtime) == 1
    assert _asked(runtime) == ["b"]


# --- look-back (回头看) ---------------------------------------------------------------------------
def _dissolved(s, clock, gid, name, members, at):
    g = repo.ensure_group(s, group_id=gid, platform="wecom", at=at - timedelta(days=200), name=name)
    g.status, g.dissolved_at, g.dissolve_method = "dissolved", at, "appchat"
    g.dissolve_state = {"members": list(members), "owner": members[0], "name": name}
    return g


def test_lookback_finds_a_rebound_30_days_after_dissolution_and_audits_it(runtime, clock):
    t0 = clock()
    members = ("zhao", "qian", "sun", "li")
    with runtime.db.session() as s:
        repo.get_or_create_person(s, "jw", t0).role = "commission"
        _dissolved(s, clock, "old", "防汛值班群", members, t0)
        _dissolved(s, clock, "quiet", "迎检材料群", ("zhou", "wu"), t0)
        # same name, but it already existed before the dissolution: not a rebound
        repo.ensure_group(s, group_id="older_twin", platform="wecom", at=t0 - timedelta(days=3), name="迎检材料群")
    clock.advance(days=5)
    with runtime.db.session() as s:  # the same people regroup under a new name
        repo.ensure_group(s, group_id="new", platform="wecom", at=clock(), name="防汛值班（新）")
        repo.add_members(s, "new", members, clock())

    clock.set(t0 + timedelta(days=29, hours=23))
    assert jobs.lookback(runtime) == 0
    with runtime.db.session() as s:
        assert s.execute(select(AuditRecord).where(AuditRecord.action == "lookback")).first() is None

    clock.set(t0 + timedelta(days=30))
    assert jobs.lookback(runtime) == 1
    with runtime.db.session() as s:
        recs = {r.group_id: r for r in s.execute(select(AuditRecord).where(AuditRecord.action == "lookback")).scalars()}
        assert set(recs) == {"old", "quiet"}
        assert recs["old"].data == {"rebound": ["new"]} and "发现反弹" in recs["old"].reason
        assert "防汛值班（新）" in recs["old"].reason and recs["old"].actor == "system:lookback"
        assert recs["quiet"].data == {"rebound": []} and recs["quiet"].reason == "回头看：未发现反弹"
        n = s.execute(select(Notice).where(Notice.kind == "lookback")).scalar_one()
        assert n.person_id == "jw" and n.group_id == "old" and "防汛值班群" in n.text and "防汛值班（新）" in n.text
        assert audit.verify(s).ok

    clock.advance(days=1)  # done once per dissolved group
    assert jobs.lookback(runtime) == 0
    with runtime.db.session() as s:
        assert len(s.execute(select(AuditRecord).where(AuditRecord.action == "lookback")).scalars().all()) == 2
        assert len(s.execute(select(Notice).where(Notice.kind == "lookback")).scalars().all()) == 1


def test_lookback_same_name_after_dissolution_is_a_rebound(runtime, clock):
    t0 = clock()
    with runtime.db.session() as s:
        _dissolved(s, clock, "old", "创卫迎检群", ("a", "b"), t0)
    clock.advance(days=2)
    with runtime.db.session() as s:
        repo.ensure_group(s, group_id="again", platform="wecom", at=clock(), name="创卫迎检群")
    clock.set(t0 + timedelta(days=31))
    assert jobs.lookback(runtime) == 1
    with runtime.db.session() as s:
        rec = s.execute(select(AuditRecord).where(AuditRecord.action == "lookback")).scalar_one()
        assert rec.group_id == "old" and rec.data == {"rebound": ["again"]}


# --- advance_pending every minute, daily stats --------------------------------------------------
def test_schedule_has_advance_pending_every_minute_and_daily_stats(settings):
    specs = dict(job_specs(settings))
    assert set(specs) <= set(jobs.JOBS)
    assert isinstance(specs["advance_pending"], IntervalTrigger)
    assert specs["advance_pending"].interval == timedelta(minutes=1)
    assert "daily_stats" in specs


def test_advance_pending_job_completes_a_restore(runtime, clock):
    with runtime.db.session() as s:
        g = repo.ensure_group(s, group_id="chat1", platform="wecom", at=clock(), name="[已解散]防汛群")
        g.status, g.dissolve_method, g.dissolved_at = "restoring", "appchat", clock() - timedelta(days=2)
        g.dissolve_state = {"members": ["owner", "a", "b"], "owner": "owner", "name": "防汛群",
                            "done": ["notice", "remove", "rename"], "restore": {"done": []}}
    sender = RecordingSender()
    sender.chats["chat1"] = {"chatid": "chat1", "name": "[已解散]防汛群", "owner": "owner", "userlist": ["owner"]}
    runtime.sender = sender
    steps = jobs.advance_pending(runtime)
    assert [(st.group_id, st.result) for st in steps] == [("chat1", "done")]
    assert sorted(sender.chats["chat1"]["userlist"]) == ["a", "b", "owner"]
    assert sender.chats["chat1"]["name"] == "防汛群"
    with runtime.db.session() as s:
        assert s.get(Group, "chat1").status == "active"
    assert jobs.advance_pending(runtime) == []  # nothing left waiting


def test_daily_stats_job_stores_one_point_per_local_day(runtime, clock):
    with runtime.db.session() as s:
        repo.ensure_group(s, group_id="g1", platform="wecom", at=clock(), name="秋粮收购专班")
    clock.set(clock().replace(hour=15, minute=50))  # 23:50 Beijing
    jobs.daily_stats(runtime)
    jobs.daily_stats(runtime)  # a rerun replaces the point
    clock.advance(days=1)
    jobs.daily_stats(runtime)
    with runtime.db.session() as s:
        days = s.execute(select(StatSnapshot.day).order_by(StatSnapshot.day)).scalars().all()
    local = clock().astimezone(runtime.settings.tz).date()
    assert days == [local - timedelta(days=1), local]
