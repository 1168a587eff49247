"""End to end on Feishu: a group seen from its events (the encrypted, signed callback), found dead,
warned, soft-dissolved on the platform (final notice, members removed, renamed), restored by its
owner's 恢复 through the callback, dissolved again and purged — every platform step through
FeishuSender (lark-oapi over HTTP) against the fake Feishu server, the audit chain verifying."""
from __future__ import annotations

from datetime import timedelta

import pytest

from platforms.feishu.sender import FeishuSender
from scheduler.lifecycle import sweep
from storage import audit
from storage.lifecycle import mark_warning_sent
from storage.models import Group
from tests.feishu.helpers import event, feishu_settings, message
from tests.feishu.test_inbound import _post
from tests.lifecycle.helpers import NOW, trail

OWNER, A, B = "ou_owner000000000000000000000001", "ou_a00000000000000000000000000002", "ou_b000000000000000000000000003"
CHAT = "oc_qiuliang00000000000000000000001"
GID = "feishu:" + CHAT
NAME = "秋粮收购专班"


@pytest.fixture
def settings(fake_feishu):
    # WeCom's app cannot send here: only Feishu can carry out the steps
    return feishu_settings(feishu_domain=fake_feishu.domain, wecom_secret="")


def _seen_from_events(client, clock, db, fake):
    """The bot created the group (建群: the person owns it); its events are what Qunzhi knows."""
    fake.add_chat(CHAT, NAME, OWNER, [A, B], created_by_bot=True)
    clock.set(NOW - timedelta(days=45))
    at = clock().timestamp()
    assert _post(client, clock, event("im.chat.member.bot.added_v1", {
        "chat_id": CHAT, "operator_id": {"open_id": OWNER}, "name": NAME}, at=at)).status_code == 200
    assert _post(client, clock, event("im.chat.member.user.added_v1", {
        "chat_id": CHAT, "operator_id": {"open_id": OWNER}, "name": NAME,
        "users": [{"user_id": {"open_id": u}} for u in (A, B)]}, at=at)).status_code == 200
    assert _post(client, clock, message(CHAT, A, "材料已报送", at=at)).status_code == 200
    with db.session() as s:  # registered by its owner (报备), as a temporary work group
        g = s.get(Group, GID)
        assert g is not None and g.platform == "feishu" and g.last_message_at is not None
        g.owner_id, g.unit, g.registered_at = "feishu:" + OWNER, "城关镇", NOW - timedelta(days=45)
    clock.set(NOW)


def _restore_through_the_callback(client, clock, at):
    clock.set(at)
    r = _post(client, clock, message(None, OWNER, f"恢复 {NAME}", at=at.timestamp()))
    assert r.status_code == 200


def test_seen_warned_soft_dissolved_restored_dissolved_again_and_purged(client, runtime, clock, fake_feishu):
    db, settings = runtime.db, runtime.settings
    sender = FeishuSender(settings)
    _seen_from_events(client, clock, db, fake_feishu)
    chat = fake_feishu.chats[CHAT]

    sweep(db, NOW, settings, apply=True, sender=sender)
    with db.session() as s:
        assert s.get(Group, GID).status == "warned"
        assert mark_warning_sent(s, GID, NOW)
    due = NOW + timedelta(days=settings.grace_days)
    r = sweep(db, due, settings, apply=True, sender=sender)
    assert ("resume", "done") in [(x.action, x.result) for x in r.steps]
    assert chat.members == [OWNER] and chat.name == f"[已解散]{NAME}" and not chat.dissolved
    [notice] = [m for m in fake_feishu.messages if m["receive_id_type"] == "chat_id"]
    assert notice["receive_id"] == CHAT
    with db.session() as s:
        g = s.get(Group, GID)
        assert (g.status, g.dissolve_method) == ("dissolved", "appchat")
        assert sorted(g.dissolve_state["members"]) == sorted("feishu:" + u for u in (OWNER, A, B))

    back = due + timedelta(days=3)
    _restore_through_the_callback(client, clock, back)
    sweep(db, back, settings, apply=True, sender=sender)
    assert sorted(chat.members) == sorted([OWNER, A, B]) and chat.name == NAME
    with db.session() as s:
        assert s.get(Group, GID).status == "active"

    # still dead after the keep window: warned, dissolved again, and purged after the restore window
    later = back + timedelta(days=settings.keep_days + 1)
    sweep(db, later, settings, apply=True, sender=sender)
    with db.session() as s:
        assert s.get(Group, GID).status == "warned"
        assert mark_warning_sent(s, GID, later)
    again = later + timedelta(days=settings.grace_days)
    sweep(db, again, settings, apply=True, sender=sender)
    assert chat.members == [OWNER] and chat.name == f"[已解散]{NAME}"
    sweep(db, again + timedelta(days=settings.restore_days), settings, apply=True, sender=sender)
    with db.session() as s:
        assert s.get(Group, GID).status == "purged"
        actions = [a[0] for a in trail(s, GID)]
        assert actions.count("dissolve") == 2 and "restore" in actions and actions[-1] == "purge"
        assert audit.verify(s).ok


def test_the_scheduled_jobs_dissolve_and_purge_a_feishu_group_through_its_own_sender(client, runtime, clock,
                                                                                      fake_feishu):
    from scheduler import jobs

    db, settings = runtime.db, runtime.settings
    _seen_from_events(client, clock, db, fake_feishu)
    chat = fake_feishu.chats[CHAT]
    jobs.sweep(runtime)
    with db.session() as s:
        assert mark_warning_sent(s, GID, NOW)
    clock.set(NOW + timedelta(days=settings.grace_days))
    jobs.sweep(runtime)
    jobs.advance_pending(runtime)
    assert chat.members == [OWNER] and chat.name == f"[已解散]{NAME}"
    clock.advance(days=settings.restore_days)
    jobs.sweep(runtime)
    jobs.advance_pending(runtime)
    assert chat.dissolved  # the purge really disbanded it: DELETE /open-apis/im/v1/chats/:chat_id
    assert fake_feishu.calls_to("DELETE", f"/im/v1/chats/{CHAT}")
    with db.session() as s:
        assert s.get(Group, GID).status == "purged"
        assert audit.verify(s).ok


def test_a_group_the_bot_does_not_own_falls_back_to_an_order(client, runtime, clock, fake_feishu):
    """Feishu documents no way to hand a group to a bot: a person's group (the bot only a member)
    is refused with 232017, and its owner gets a dissolution order instead."""
    db, settings = runtime.db, runtime.settings
    sender = FeishuSender(settings)
    _seen_from_events(client, clock, db, fake_feishu)
    chat = fake_feishu.chats[CHAT]
    chat.created_by_bot = False  # a person created it and added the bot
    sweep(db, NOW, settings, apply=True, sender=sender)
    with db.session() as s:
        assert mark_warning_sent(s, GID, NOW)
    sweep(db, NOW + timedelta(days=settings.grace_days), settings, apply=True, sender=sender)
    assert sorted(chat.members) == sorted([OWNER, A, B]) and chat.name == NAME and not chat.dissolved
    assert [c for c in fake_feishu.calls_to("DELETE", f"/im/v1/chats/{CHAT}/members")]  # tried, refused
    with db.session() as s:
        g = s.get(Group, GID)
        assert (g.status, g.dissolve_method) == ("dissolving", "order") and g.order_deadline is not None
        assert audit.verify(s).ok


def test_an_outage_of_feishus_api_mid_dissolution_is_finished_on_the_next_run(client, runtime, clock, fake_feishu):
    """The notice went out, then Feishu answered 502s: the steps left wait (transient), nothing is
    turned into an order, and the next run takes only what is left."""
    db, settings = runtime.db, runtime.settings
    sender = FeishuSender(settings)
    _seen_from_events(client, clock, db, fake_feishu)
    chat = fake_feishu.chats[CHAT]
    sweep(db, NOW, settings, apply=True, sender=sender)
    with db.session() as s:
        assert mark_warning_sent(s, GID, NOW)
    due = NOW + timedelta(days=settings.grace_days)
    real_remove = sender.group_remove

    def notice_then_outage(chat_id, user_ids):
        fake_feishu.http_status_next(50, 502)  # every call from here on fails
        return real_remove(chat_id, user_ids)

    sender.group_remove = notice_then_outage
    r = sweep(db, due, settings, apply=True, sender=sender)
    assert ("resume", "pending") in [(x.action, x.result) for x in r.steps]
    with db.session() as s:
        g = s.get(Group, GID)
        assert (g.status, g.dissolve_method, g.dissolve_state["done"]) == ("dissolving", "appchat", ["notice"])
    sender.group_remove = real_remove
    fake_feishu.recover()  # the API is back
    sweep(db, due + timedelta(hours=1), settings, apply=True, sender=sender)
    assert chat.members == [OWNER] and chat.name == f"[已解散]{NAME}"
    assert len([m for m in fake_feishu.messages if m["receive_id_type"] == "chat_id"]) == 1  # the notice once
    with db.session() as s:
        assert s.get(Group, GID).status == "dissolved"
