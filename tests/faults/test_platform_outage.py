"""The Feishu and DingTalk APIs down for a while (HTTP 5xx, each platform's rate limit, expired
tokens), against the real senders over HTTP to the fakes:

* the outbox retries, and every message is delivered exactly once after the platform recovers,
  none lost, parked or dead (as tests/faults/test_outbox_outage.py for WeCom);
* an outage in the middle of a soft dissolution's platform steps on DingTalk leaves the steps left
  waiting (transient: no order), and the next run takes only those, each step once (Feishu's
  case is tests/feishu/test_lifecycle_e2e.py).

QUNZHI_FAULT_OUTBOX (heavy: 2000) sets the number of messages per platform."""
from __future__ import annotations

import json
import os
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from platforms.dingtalk.sender import DingTalkSender
from scheduler.lifecycle import sweep
from scheduler.outbox import Dispatcher
from scheduler.routing import build_senders
from storage import audit
from storage.models import Group, OutboxMessage
from storage.outbox import enqueue
from tests.conftest import make_settings
from tests.fakes.fake_dingtalk import APP_KEY, APP_SECRET as DT_SECRET
from tests.feishu.helpers import feishu_settings
from tests.lifecycle.helpers import NOW, group, seed_people, trail

N = int(os.environ.get("QUNZHI_FAULT_OUTBOX", "120"))
# recipients grow with N: the dispatcher's per-recipient windows run on real time, the test's
# clock is fake, so each recipient stays under its limit (scheduler.outbox.PER_RECIPIENT)
PEOPLE, CHATS = max(40, N // 10), max(4, N // 50)


def _dingtalk_settings(fake, **kw):
    return make_settings(wecom_corp_id="", wecom_secret="", dingtalk_app_key=APP_KEY, dingtalk_app_secret=DT_SECRET,
                         dingtalk_api_base=fake.url, dingtalk_oapi_base=fake.url,
                         dingtalk_scene_template_id="tpl-1", **kw)


def _drain(db, clock, d: Dispatcher, script) -> None:
    rounds = 0
    while rounds < 400:
        rounds += 1
        script(rounds)
        d.run_once()
        with db.session() as s:
            left = s.execute(select(OutboxMessage.id).where(OutboxMessage.status.in_(("pending", "sending")))).all()
        if not left:
            break
        clock.advance(minutes=2)
    d.close()
    with db.session() as s:
        rows = s.execute(select(OutboxMessage)).scalars().all()
    stuck = [(r.channel, r.recipient, r.attempts, r.next_attempt_at, r.last_error) for r in rows if r.status != "sent"]
    assert stuck == [], (len(stuck), f"after {rounds} rounds", stuck[:5])


def test_feishu_outage_then_each_message_delivered_exactly_once(db, clock, fake_feishu):
    groups = [f"oc_outage{i:03d}" for i in range(CHATS)]
    for chat in groups:
        fake_feishu.add_chat(chat, "群", "ou_owner", ["ou_a"])
    with db.session() as s:
        for i in range(N):
            if i % 5 == 4:  # a group's message
                enqueue(s, channel="feishu_chat", recipient="feishu:" + groups[(i // 5) % CHATS], kind="notice",
                        payload={"text": f"通知{i}"}, at=clock())
            else:
                enqueue(s, channel="feishu", recipient=f"feishu:ou_cadre{i % PEOPLE:03d}", kind="reply",
                        payload={"text": f"通知{i}"}, at=clock())
    settings = feishu_settings(feishu_domain=fake_feishu.domain, wecom_secret="", wecom_corp_id="")
    senders = build_senders(settings)
    assert set(senders) >= {"feishu", "feishu_chat"} and "user" not in senders
    d = Dispatcher(db, senders, clock=clock, workers=4, global_per_second=None)
    fake_feishu.http_status_next(8, 502)        # gateway errors (an HTML page)
    fake_feishu.rate_limit_next(6)              # HTTP 429, code 99991400
    fake_feishu.fail_next(4, 99991400, "request trigger frequency limit")  # the code alone

    def script(rounds):
        if rounds == 2:
            fake_feishu.expire_token()          # 99991663: refreshed once and retried
        if rounds == 4:
            fake_feishu.http_status_next(6, 503)
            fake_feishu.rate_limit_next(3)

    _drain(db, clock, d, script)
    counts = Counter(json.loads(m["content"])["text"] for m in fake_feishu.messages)
    assert set(counts) == {f"通知{i}" for i in range(N)}, "nothing lost"
    assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}
    to_groups = {m["receive_id"] for m in fake_feishu.messages if m["receive_id_type"] == "chat_id"}
    assert to_groups == set(groups)
    assert d.stats.rate_limited >= 1 and d.stats.retried >= 1
    assert len(fake_feishu.calls_to("POST", "/auth/v3/tenant_access_token")) >= 2, "the expired token was refreshed"


def test_dingtalk_outage_then_each_message_delivered_exactly_once(db, clock, fake_dingtalk):
    with db.session() as s:
        for i in range(N):
            enqueue(s, channel="dingtalk", recipient=f"dingtalk:cadre{i % PEOPLE:03d}", kind="reply",
                    payload={"text": f"通知{i}"}, at=clock())
    senders = build_senders(_dingtalk_settings(fake_dingtalk))
    assert "dingtalk" in senders and "user" not in senders
    d = Dispatcher(db, senders, clock=clock, workers=4, global_per_second=None)
    fake_dingtalk.fail_next(8, 502)
    fake_dingtalk.throttle_next(8)              # HTTP 429 Throttling.Api
    fake_dingtalk.fail_next(4, 503)

    def script(rounds):
        if rounds == 2:
            fake_dingtalk.expire_token()        # 401 InvalidAuthentication: refreshed once and retried
        if rounds == 4:
            fake_dingtalk.throttle_next(4)
            fake_dingtalk.fail_next(4, 500)

    _drain(db, clock, d, script)
    delivered = [(tuple(m["to"]), m["param"]["content"]) for m in fake_dingtalk.messages]
    counts = Counter(text for _, text in delivered)
    assert set(counts) == {f"通知{i}" for i in range(N)}, "nothing lost"
    assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}
    assert all(to == (f"cadre{int(text[2:]) % PEOPLE:03d}",) for to, text in delivered), "raw userids on the wire"
    assert d.stats.rate_limited >= 1 and d.stats.retried >= 1
    assert len(fake_dingtalk.called("/v1.0/oauth2/accessToken")) >= 2, "the expired token was refreshed"


CID = "cidQiuliang0001=="
GID = "dingtalk:" + CID
NAME = "秋粮收购专班"


@pytest.mark.parametrize("outage", ["http", "throttle"])
def test_a_dingtalk_outage_mid_dissolution_is_finished_on_the_next_run(db, fake_dingtalk, outage):
    """The notice went out, then DingTalk failed every call (HTTP 503, or its QPS limit): the
    steps left wait (transient), nothing becomes an order; the next run takes only what is left,
    and the notice is not posted again."""
    settings = _dingtalk_settings(fake_dingtalk, database_url=db.url)
    fake_dingtalk.add_group(CID, NAME, "owner9", {"ua", "ub", "uc"})
    with db.session() as s:
        seed_people(s)
        g = group(s, GID, NAME, platform="dingtalk", owner="dingtalk:owner9", idle_days=60,
                  members=["dingtalk:owner9", "dingtalk:ua", "dingtalk:ub", "dingtalk:uc"])
        g.status, g.warned_at, g.warning_sent_at = "warned", NOW - timedelta(days=9), NOW - timedelta(days=8)
    sender = DingTalkSender(settings)
    real_notice = sender.group_notice

    def notice_then_outage(chat_id, text):
        result = real_notice(chat_id, text)
        if outage == "http":
            fake_dingtalk.fail_next(50, 503)   # every call from here on fails
        else:
            fake_dingtalk.throttle_next(50)    # classic errcode 90018, new API HTTP 429
        return result

    sender.group_notice = notice_then_outage
    r = sweep(db, NOW, settings, apply=True, sender=sender)
    assert ("resume", "pending") in [(x.action, x.result) for x in r.steps], r.steps
    with db.session() as s:
        g = s.get(Group, GID)
        assert (g.status, g.dissolve_method, g.dissolve_state["done"]) == ("dissolving", "appchat", ["notice"])
        assert g.order_deadline is None
    chat = fake_dingtalk.groups[CID]
    assert chat.members == {"owner9", "ua", "ub", "uc"} and chat.title == NAME  # nothing more happened

    sender.group_notice = real_notice
    fake_dingtalk.recover()                    # DingTalk is back
    r = sweep(db, NOW + timedelta(hours=1), settings, apply=True, sender=sender)
    assert ("resume", "done") in [(x.action, x.result) for x in r.steps], r.steps
    assert chat.members == {"owner9"} and chat.title == f"[已解散]{NAME}" and not chat.disbanded
    assert len([m for m in fake_dingtalk.messages if m.get("group") == CID]) == 1, "the notice once"
    assert len(fake_dingtalk.called("/topapi/im/chat/scenegroup/update")) == 1, "renamed once"
    removed = [c.json["user_ids"] for c in fake_dingtalk.called("/topapi/im/chat/scenegroup/member/delete")]
    assert sorted(u for ids in removed[-1:] for u in ids.split(",")) == ["ua", "ub", "uc"]
    with db.session() as s:
        g = s.get(Group, GID)
        assert (g.status, g.dissolve_state["done"]) == ("dissolved", ["notice", "remove", "rename"])
        actions = [a for a, _, _ in trail(s, GID)]
        assert actions.count("dissolve_intent") == 1 and actions.count("dissolve") == 1
        assert "dissolve_fallback" not in actions and "dissolve_order" not in actions
        assert audit.verify(s).ok
    # a third run does nothing more on the platform
    calls = len(fake_dingtalk.calls)
    sweep(db, NOW + timedelta(hours=2), settings, apply=True, sender=sender)
    assert len(fake_dingtalk.calls) == calls
