"""Regression tests for holes a review found: each refusal or bad input must change nothing."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from handlers.dispatch import handle_event
from governance.events import Event
from storage import repo
from scheduler.lifecycle import sweep
from storage.lifecycle import confirm_bridge_dissolution
from storage.models import Group, Notice, OutboxMessage
from storage.notices import deliver_due_notices
from tests.lifecycle.helpers import NOW, dump, group, person, say, seed_people

DUE = NOW + timedelta(days=7)


def _in_group(runtime, sender, text, gid, at=NOW, msg_id=None):
    ev = Event(platform="aibot", kind="message", sender_id=sender, at=at, text=text, group_id=gid,
               mentioned_bot=True, msg_id=msg_id or f"{sender}:{gid}:{text}:{at.timestamp()}")
    with runtime.db.session() as s:
        return [r.text for r in handle_event(s, ev, runtime.services)]


def test_unowned_group_cannot_be_claimed_by_name_from_outside(runtime):
    with runtime.db.session() as s:
        seed_people(s)
        g = repo.ensure_group(s, group_id="wrk1", platform="aibot", at=NOW - timedelta(days=90), name="防汛指挥部")
        repo.add_members(s, "wrk1", ["m1", "m2", "m3"], NOW - timedelta(days=90))
        assert g.owner_id is None
    say(runtime, "stranger", "报备 防汛指挥部 用途:测试 单位:外单位 类别:临时群 到期:30天", NOW)
    say(runtime, "stranger", "完成 防汛指挥部", NOW)
    with runtime.db.session() as s:
        g = s.get(Group, "wrk1")
        assert (g.owner_id, g.done_at, g.temporary) == (None, None, False)


def test_a_typo_in_a_group_never_acts_on_the_current_group(runtime):
    with runtime.db.session() as s:
        seed_people(s)
        group(s, "chatA", "村务群", idle_days=1)
    def lifecycle_state():
        with runtime.db.session() as s:
            g = s.get(Group, "chatA")
            return g.status, g.done_at, g.dissolve_state, g.kept_until, g.expires_at, dump(runtime.db)["audit_log"]

    before = lifecycle_state()
    for text in ("完成 防汛值斑群", "完成了吗", "恢复 不存在的群", "已解散 不存在的群"):
        _in_group(runtime, "owner1", text, "chatA")
    assert lifecycle_state() == before  # the @-mentions count as activity, nothing else changed
    # 续期 and 保留 said inside the group still mean that group
    assert "已把“" in _in_group(runtime, "owner1", "续期 30天", "chatA")[0]


def test_refused_restore_changes_nothing(runtime):
    with runtime.db.session() as s:
        seed_people(s)
        g = group(s, "old", "旧群", idle_days=90)
        g.status, g.dissolved_at, g.dissolve_method = "dissolved", NOW - timedelta(days=40), "order"
    before = dump(runtime.db)
    [reply] = say(runtime, "owner1", "恢复 旧群", NOW)
    assert "恢复" in reply
    assert dump(runtime.db)["groups"] == before["groups"]


def test_restore_withdraws_a_pending_bridge_instruction_and_stale_confirmations_are_ignored(runtime):
    db, settings = runtime.db, runtime.settings
    with db.session() as s:
        seed_people(s)
        group(s, "wx1", "微信群", platform="wechat")
    sweep(db, NOW, settings, apply=True)
    with db.session() as s:
        from storage.lifecycle import mark_warning_sent

        assert mark_warning_sent(s, "wx1", NOW)
    sweep(db, DUE, settings, apply=True)
    with db.session() as s:
        iid = s.get(Group, "wx1").dissolve_state["instruction_id"]
        assert not confirm_bridge_dissolution(s, "wx1", DUE, settings, instruction_id="someone-else")
        assert s.get(Group, "wx1").status == "dissolving"
    [reply] = say(runtime, "owner1", "恢复 微信群", DUE + timedelta(hours=1))
    assert "已恢复" in reply
    with db.session() as s:
        row = s.execute(select(OutboxMessage).where(OutboxMessage.dedupe_key == f"bridge-dissolve:{iid}")).scalar_one()
        assert row.status == "cancelled"
        assert s.get(Group, "wx1").status == "active"
        assert not confirm_bridge_dissolution(s, "wx1", DUE + timedelta(hours=2), settings, instruction_id=iid)


def test_unit_admin_without_a_unit_administers_nothing(runtime):
    with runtime.db.session() as s:
        seed_people(s)
        person(s, "ua", "unit_admin", unit=None)
        g = group(s, "g1", "张三的群")
        g.unit = None
    before = dump(runtime.db)
    say(runtime, "ua", "保护 张三的群", NOW)
    assert dump(runtime.db)["groups"] == before["groups"]


def test_overlong_category_is_refused_in_chinese(runtime):
    [reply] = say(runtime, "owner1", "报备 测试群 用途:测试 单位:城关镇 类别:" + "很" * 40 + "群", NOW)
    assert "类别太长了" in reply
    with runtime.db.session() as s:
        assert s.execute(select(Group)).first() is None


def test_only_the_owners_warning_starts_the_grace_period(runtime):
    db, settings = runtime.db, runtime.settings
    with db.session() as s:
        seed_people(s)
        group(s, "tmp1", "秋粮专班", idle_days=1, temporary=True, expires_at=(NOW - timedelta(days=3)).date())
    sweep(db, NOW, settings, apply=True)
    with db.session() as s:
        kinds = sorted((n.person_id, n.kind) for n in s.execute(select(Notice)).scalars())
        assert ("owner1", "warning") in kinds and ("m1", "warning_member") in kinds
        # the owner's budget is used up this week (two messages already this Monday morning)
        for i in (1, 2):
            s.add(Notice(person_id="owner1", kind="reminder", text="x", due_at=NOW - timedelta(hours=1),
                         created_at=NOW - timedelta(hours=1), status="sent", outbox_id=9000 + i,
                         decided_at=NOW - timedelta(hours=1)))
    from governance.worktime import WorkTime

    with db.session() as s:
        deliver_due_notices(s, now=NOW + timedelta(minutes=5), budget=2, wt=WorkTime.from_settings(settings))
        payloads = [o.payload for o in s.execute(select(OutboxMessage)).scalars()]
        assert payloads, "the members' notices went out"
        assert all("tmp1" not in (p.get("warning_groups") or []) for p in payloads), payloads
        owner_warning = s.execute(select(Notice).where(Notice.person_id == "owner1", Notice.kind == "warning")
                                  ).scalar_one()
        assert owner_warning.status == "held"
