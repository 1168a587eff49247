"""Stale notices: a warning, order, reminder or merge notice whose premise no longer holds is
withdrawn before it goes out (when it is put into a digest and again right before the outbox
sends it); one already delivered is followed by one short correction (working time, no budget).

Real flow: sweep --apply, chat commands through ``handle_event``, the ``deliver_notices`` job,
the outbox dispatcher and WeComSender against the fake WeCom server."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from platforms.wecom.sender import WeComSender
from scheduler import jobs
from scheduler.outbox import Dispatcher
from scheduler.lifecycle import sweep
from storage.models import Group, Notice, OutboxMessage
from tests.conftest import make_settings
from tests.lifecycle.helpers import NOW, group, person, say, seed_people

FLOOD = "防汛抗旱群"


def _texts(fake, to: str | None = None) -> list[str]:
    return [(d.json.get("text") or {}).get("content") or (d.json.get("markdown") or {}).get("content") or ""
            for d in fake.delivered("message/send") if to is None or d.json.get("touser") == to]


def _dispatch(runtime, fake, clock) -> None:
    d = Dispatcher(runtime.db, WeComSender(make_settings(wecom_api_base=fake.base_url)), clock=clock, workers=2,
                   global_per_second=None)
    try:
        d.drain()
    finally:
        d.close()


def _deliver_and_dispatch(runtime, fake, clock) -> None:
    jobs.deliver_notices(runtime)
    _dispatch(runtime, fake, clock)


def _seed_zombie(runtime) -> None:
    with runtime.db.session() as s:
        seed_people(s)
        group(s, "g-flood", FLOOD, platform="ledger", idle_days=45)


def _warned(runtime, clock) -> None:
    _seed_zombie(runtime)
    sweep(runtime.db, clock(), runtime.settings, apply=True)
    with runtime.db.session() as s:
        assert s.get(Group, "g-flood").status == "warned"
        assert s.execute(select(Notice).where(Notice.kind == "warning")).scalar_one().status == "pending"


def test_kept_before_the_digest_the_warning_is_never_sent(runtime, clock, fake_wecom):
    _warned(runtime, clock)
    clock.advance(minutes=3)
    [reply] = say(runtime, "owner1", f"保留 {FLOOD} 汛期还要用", clock())
    assert "已保留" in reply
    clock.advance(minutes=5)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    assert not any("解散" in t for t in _texts(fake_wecom)), _texts(fake_wecom)
    with runtime.db.session() as s:
        warning = s.execute(select(Notice).where(Notice.kind == "warning")).scalar_one()
        assert warning.status == "withdrawn"
        assert s.execute(select(OutboxMessage)).first() is None
        assert s.get(Group, "g-flood").warning_sent_at is None


def test_kept_after_the_digest_was_queued_the_outbox_does_not_send_it(runtime, clock, fake_wecom):
    _warned(runtime, clock)
    clock.advance(minutes=3)
    jobs.deliver_notices(runtime)  # the warning is in the outbox, not sent yet
    with runtime.db.session() as s:
        assert s.execute(select(OutboxMessage.status)).scalar_one() == "pending"
    clock.advance(minutes=1)
    say(runtime, "owner1", f"保留 {FLOOD} 汛期还要用", clock())
    _dispatch(runtime, fake_wecom, clock)
    assert _texts(fake_wecom) == []
    with runtime.db.session() as s:
        row = s.execute(select(OutboxMessage)).scalar_one()
        assert row.status == "withdrawn"
        assert s.execute(select(Notice.status).where(Notice.kind == "warning")).scalar_one() == "withdrawn"
        g = s.get(Group, "g-flood")
        assert g.status == "active" and g.warning_sent_at is None


def test_a_digest_is_re_rendered_without_the_withdrawn_item(runtime, clock, fake_wecom):
    _seed_zombie(runtime)
    with runtime.db.session() as s:  # a temporary group of the same owner, ending in 3 days
        group(s, "g-tmp", "秋粮专班", platform="ledger", idle_days=1, temporary=True, members=("owner1", "t1", "t2"),
              expires_at=(NOW + timedelta(days=3)).astimezone(runtime.settings.tz).date())
    sweep(runtime.db, clock(), runtime.settings, apply=True)
    assert jobs.expiry_reminders(runtime) == 1
    clock.advance(minutes=3)
    jobs.deliver_notices(runtime)
    with runtime.db.session() as s:
        row = s.execute(select(OutboxMessage)).scalar_one()
        assert row.kind == "digest" and FLOOD in row.payload["text"] and "秋粮专班" in row.payload["text"]
    say(runtime, "owner1", f"保留 {FLOOD} 汛期还要用", clock())
    _dispatch(runtime, fake_wecom, clock)
    [text] = _texts(fake_wecom)
    assert "秋粮专班" in text and FLOOD not in text and "您有" not in text
    with runtime.db.session() as s:
        row = s.execute(select(OutboxMessage)).scalar_one()
        assert row.status == "sent" and row.payload["warning_groups"] == []
        assert [n.kind for n in s.execute(select(Notice).where(Notice.status == "withdrawn")).scalars()] == ["warning"]


def test_kept_after_delivery_one_correction_outside_the_budget(runtime, clock, fake_wecom):
    _warned(runtime, clock)
    clock.advance(minutes=3)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    [warning] = _texts(fake_wecom)
    assert "解散" in warning
    with runtime.db.session() as s:  # the owner's weekly budget (2) is now used up
        s.add(Notice(person_id="owner1", kind="expiry", text="别的提醒", due_at=clock(), created_at=clock(),
                     status="sent", decided_at=clock(), outbox_id=9001))
    clock.advance(minutes=5)
    [reply] = say(runtime, "owner1", f"保留 {FLOOD} 汛期还要用", clock())
    assert "解散提醒已撤销" in reply
    clock.advance(minutes=10)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    texts = _texts(fake_wecom)
    assert len(texts) == 2, texts
    assert texts[1] == f"对“{FLOOD}”的解散提醒已撤销（您已保留至2027年2月21日），无需处理。"
    clock.advance(minutes=10)  # nothing more for the owner: one correction only
    say(runtime, "owner1", f"保留 {FLOOD} 还要用", clock())
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    assert len(_texts(fake_wecom, to="owner1")) == 2


def test_a_correction_waits_for_working_time(runtime, clock, fake_wecom):
    _warned(runtime, clock)
    clock.advance(minutes=3)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    clock.set(NOW.replace(hour=13))  # 21:00 in Beijing
    say(runtime, "owner1", f"保留 {FLOOD} 汛期还要用", clock())
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    assert len(_texts(fake_wecom)) == 1
    with runtime.db.session() as s:
        assert s.execute(select(Notice.status).where(Notice.kind == "correction")).scalar_one() == "held"
    clock.set(NOW + timedelta(days=1))  # Tuesday 10:00
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    texts = _texts(fake_wecom)
    assert len(texts) == 2 and "解散提醒已撤销" in texts[1]


def _merged(runtime, clock):
    with runtime.db.session() as s:
        seed_people(s)
        group(s, "g-a", "秋收调度群", platform="ledger", idle_days=2, members=("owner1", "m1", "m2"))
        group(s, "g-b", "秋收工作群", platform="ledger", idle_days=1, members=("owner1", "m1", "m2", "m3"))
    [reply] = say(runtime, "admin1", "合并 秋收调度群 到 秋收工作群", clock())
    assert "已安排合并" in reply
    with runtime.db.session() as s:
        kinds = sorted(n.kind for n in s.execute(select(Notice)).scalars())
        assert "dissolve_order" in kinds and "merge" in kinds


def test_merge_undone_by_restore_before_delivery_sends_no_order(runtime, clock, fake_wecom):
    _merged(runtime, clock)
    clock.advance(minutes=2)
    [reply] = say(runtime, "admin1", "恢复 秋收调度群", clock())
    assert "已恢复" in reply
    clock.advance(minutes=10)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    texts = _texts(fake_wecom)
    assert not any("手动解散" in t or "合并" in t for t in texts), texts
    with runtime.db.session() as s:
        assert {n.status for n in s.execute(select(Notice).where(Notice.kind.in_(("merge", "dissolve_order"))))
                .scalars()} == {"withdrawn"}


def test_merge_undone_after_delivery_the_owner_gets_a_correction(runtime, clock, fake_wecom):
    _merged(runtime, clock)
    clock.advance(minutes=2)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    assert any("逾期未处理将报送纪委监委" in t for t in _texts(fake_wecom))
    n_before = len(_texts(fake_wecom))
    clock.advance(minutes=2)
    say(runtime, "admin1", "恢复 秋收调度群", clock())
    clock.advance(minutes=10)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    new = _texts(fake_wecom)[n_before:]
    by_person = {d.json["touser"]: (d.json.get("text") or {}).get("content", "")
                 for d in fake_wecom.delivered("message/send")[n_before:]}
    assert len(new) == 3, new  # the owner and the two members, one message each
    assert "解散通知已撤销" in by_person["owner1"] and "秋收调度群" in by_person["owner1"]
    assert "合并" in by_person["m1"] and "已撤销" in by_person["m1"]


def test_renewed_before_delivery_the_expiry_reminder_is_withdrawn(runtime, clock, fake_wecom):
    with runtime.db.session() as s:
        seed_people(s)
        group(s, "g-tmp", "秋粮专班", platform="ledger", idle_days=1, temporary=True,
              expires_at=(NOW + timedelta(days=3)).astimezone(runtime.settings.tz).date())
    assert jobs.expiry_reminders(runtime) == 1
    say(runtime, "owner1", "续期 秋粮专班 30天", clock())
    clock.advance(minutes=10)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    assert _texts(fake_wecom) == []
    with runtime.db.session() as s:
        assert s.execute(select(Notice.status).where(Notice.kind == "expiry")).scalar_one() == "withdrawn"


def test_protected_by_the_dashboard_after_delivery_gets_a_correction(runtime, clock, fake_wecom):
    from bot.dashboard import actions

    _warned(runtime, clock)
    clock.advance(minutes=3)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    with runtime.db.session() as s:
        g = s.get(Group, "g-flood")
        actions.protect(s, g, actor="admin1", now=clock(), settings=runtime.settings)
    clock.advance(minutes=10)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    texts = _texts(fake_wecom)
    assert len(texts) == 2 and texts[1].startswith(f"对“{FLOOD}”的解散提醒已撤销")


def test_unwarned_by_the_sweep_after_delivery_gets_a_correction(runtime, clock, fake_wecom):
    _warned(runtime, clock)
    clock.advance(minutes=3)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    clock.advance(days=1)
    with runtime.db.session() as s:  # the group came back to life
        s.get(Group, "g-flood").last_work_at = clock() - timedelta(hours=2)
    report = sweep(runtime.db, clock(), runtime.settings, apply=True)
    assert [(st.action, st.result) for st in report.steps] == [("unwarn", "done")]
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    texts = _texts(fake_wecom)
    assert texts[1:] == [f"对“{FLOOD}”的解散提醒已撤销（已不再符合解散条件），无需处理。"]


def test_renewed_after_an_expiry_warning_was_delivered_gets_a_correction(runtime, clock, fake_wecom):
    with runtime.db.session() as s:
        seed_people(s)
        group(s, "g-tmp", "秋粮专班", platform="ledger", idle_days=1, temporary=True,
              expires_at=(NOW - timedelta(days=2)).astimezone(runtime.settings.tz).date())
    sweep(runtime.db, clock(), runtime.settings, apply=True)
    clock.advance(minutes=3)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    owner_texts = _texts(fake_wecom, to="owner1")
    assert len(owner_texts) == 1 and "解散" in owner_texts[0]
    members_before = len(_texts(fake_wecom, to="m1"))
    assert members_before == 1  # the members of a temporary group are told too
    clock.advance(minutes=3)
    say(runtime, "owner1", "续期 秋粮专班 30天", clock())
    clock.advance(minutes=10)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    [owner_fix] = _texts(fake_wecom, to="owner1")[1:]
    assert owner_fix.startswith("对“秋粮专班”的解散提醒已撤销（您已续期至")
    [member_fix] = _texts(fake_wecom, to="m1")[1:]
    assert member_fix.startswith("对“秋粮专班”的解散提醒已撤销（已续期至")


def test_restored_after_the_dissolution_notice_was_delivered(runtime, clock, fake_wecom):
    _warned(runtime, clock)
    clock.advance(minutes=3)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    clock.advance(days=8)  # grace over: the sweep orders the owner to dissolve it
    sweep(runtime.db, clock(), runtime.settings, apply=True)
    say(runtime, "owner1", f"已解散 {FLOOD}", clock())
    with runtime.db.session() as s:
        assert s.get(Group, "g-flood").status == "dissolved"
    clock.advance(minutes=10)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    assert any("已解散" in t and "可恢复" in t for t in _texts(fake_wecom, to="owner1"))
    n = len(_texts(fake_wecom, to="owner1"))
    clock.advance(minutes=10)
    say(runtime, "owner1", f"恢复 {FLOOD}", clock())
    clock.advance(minutes=10)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    assert _texts(fake_wecom, to="owner1")[n:] == [f"对“{FLOOD}”的解散通知已撤销（您已恢复该群），无需处理。"]


def test_an_overdue_order_restored_before_the_report_is_not_reported(runtime, clock, fake_wecom):
    _warned(runtime, clock)
    clock.advance(minutes=3)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    clock.advance(days=8)
    sweep(runtime.db, clock(), runtime.settings, apply=True)  # the dissolution order
    clock.advance(days=4)  # the deadline passed: the commission is told
    sweep(runtime.db, clock(), runtime.settings, apply=True)
    with runtime.db.session() as s:
        assert s.execute(select(Notice.status).where(Notice.kind == "order_overdue")).scalar_one() == "pending"
    say(runtime, "owner1", f"恢复 {FLOOD}", clock())
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    assert _texts(fake_wecom, to="comm1") == []
    with runtime.db.session() as s:
        assert s.execute(select(Notice.status).where(Notice.kind == "order_overdue")).scalar_one() == "withdrawn"


def test_a_useless_review_answered_before_delivery_is_withdrawn(runtime, clock, fake_wecom):
    with runtime.db.session() as s:
        seed_people(s)
        group(s, "g-x", "会务群", platform="ledger", idle_days=1, members=("owner1", "v1", "v2", "v3"))
    say(runtime, "v1", "这个群没用 会务群", clock())
    say(runtime, "v2", "这个群没用 会务群", clock() + timedelta(seconds=1))
    with runtime.db.session() as s:
        assert s.execute(select(Notice.status).where(Notice.kind == "useless_review")).scalar_one() == "pending"
    say(runtime, "owner1", "保留 会务群 每周例会要用", clock() + timedelta(minutes=1))
    clock.advance(minutes=10)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    assert _texts(fake_wecom, to="owner1") == []
    with runtime.db.session() as s:
        assert s.execute(select(Notice.status).where(Notice.kind == "useless_review")).scalar_one() == "withdrawn"


def test_a_warning_that_may_already_have_arrived_is_not_altered_but_corrected(runtime, clock, fake_wecom):
    """A send that timed out may have been accepted: the dispatcher does not withdraw or re-render
    it (WeCom's duplicate check must see the same message); the person gets the correction."""
    import time

    _warned(runtime, clock)
    clock.advance(minutes=3)
    jobs.deliver_notices(runtime)
    fake_wecom.delay_next(1, 1.0)  # answers after the client gave up, but delivers
    d = Dispatcher(runtime.db, WeComSender(make_settings(wecom_api_base=fake_wecom.base_url), timeout=0.3),
                   clock=clock, workers=2, global_per_second=None)
    d.run_once()
    deadline = time.monotonic() + 5
    while not fake_wecom.delivered() and time.monotonic() < deadline:
        time.sleep(0.05)
    with runtime.db.session() as s:
        row = s.execute(select(OutboxMessage)).scalar_one()
        assert row.status == "pending" and row.sent_at is not None
    say(runtime, "owner1", f"保留 {FLOOD} 汛期还要用", clock())
    clock.advance(minutes=3)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    d.run_once()
    d.close()
    texts = _texts(fake_wecom)
    assert len(texts) == 2 and "如无异议" in texts[0], texts  # the resend was dropped by the duplicate check
    assert texts[1].startswith(f"对“{FLOOD}”的解散提醒已撤销")
    assert fake_wecom.duplicates >= 1


def test_a_delivered_expiry_reminder_is_corrected_only_for_someone_who_did_not_renew_it(runtime, clock, fake_wecom):
    with runtime.db.session() as s:
        seed_people(s)
        person(s, "owner2", name="张镇长")
        for gid, name, owner, members in (("g-a", "秋粮专班", "owner1", ("owner1", "a1")),
                                          ("g-b", "冬训专班", "owner2", ("owner2", "b1"))):
            group(s, gid, name, platform="ledger", idle_days=1, temporary=True, owner=owner, members=members,
                  expires_at=(NOW + timedelta(days=3)).astimezone(runtime.settings.tz).date())
    assert jobs.expiry_reminders(runtime) == 2
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    assert len(_texts(fake_wecom)) == 2
    clock.advance(minutes=5)
    say(runtime, "owner1", "续期 秋粮专班 30天", clock())  # the owner did what the reminder asked
    say(runtime, "admin1", "续期 冬训专班 30天", clock())  # someone else did: the owner is told
    clock.advance(minutes=10)
    _deliver_and_dispatch(runtime, fake_wecom, clock)
    assert _texts(fake_wecom, to="owner1")[1:] == []
    [fix] = _texts(fake_wecom, to="owner2")[1:]
    assert fix.startswith("对“冬训专班”的到期提醒已撤销（已续期至") and fix.endswith("无需处理。")
