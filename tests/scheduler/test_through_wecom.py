"""Through the real parts: the encrypted /wecom/callback route, the outbox dispatcher, WeComSender
(wechatpy over HTTP) and the fake WeCom server, counting what the fake really delivered."""
import time
from datetime import timedelta

import pytest

from tests.fakes.crashing import CrashAfterSend
from sqlalchemy import select

from platforms.wecom.sender import WeComSender
from scheduler.outbox import Dispatcher
from storage import repo
from storage.models import OutboxMessage, PulseResponse
from storage.outbox import enqueue
from tests.bot.helpers import WeComSim, card_event_xml
from tests.conftest import make_settings


class Crash(BaseException):
    """The process dying between WeCom's answer and the commit."""


def _sender(fake, **kw):
    return WeComSender(make_settings(wecom_api_base=fake.base_url), **kw)


def _dispatcher(db, sender, clock, **kw):
    kw.setdefault("global_per_second", None)
    return Dispatcher(db, sender, clock=clock, workers=4, **kw)


def test_pulse_card_click_through_the_callback_reaches_update_template_card(client, runtime, clock, fake_wecom):
    with runtime.db.session() as s:
        repo.get_or_create_person(s, "wangwu", clock()).unit = "城关镇"
    sim = WeComSim(client, clock)
    xml = card_event_xml("wangwu", int(clock().timestamp()), task_id="pulse:5f3a9c", event_key="pulse:2",
                         response_code="RC-PULSE-1", card_type="button_interaction", options=())
    r = sim.post_plain(xml)
    assert (r.status_code, r.text) == (200, "")
    assert sim.post_plain(xml).status_code == 200  # WeCom's retry of the same click (new nonce)
    with runtime.db.session() as s:
        answer = s.execute(select(PulseResponse)).scalar_one()
        assert answer.value == 2 and answer.unit == "城关镇" and "wangwu" not in answer.voter_key
        upd = s.execute(select(OutboxMessage)).scalar_one()
        assert (upd.channel, upd.status, upd.recipient) == ("card_update", "pending", "RC-PULSE-1")

    d = _dispatcher(runtime.db, _sender(fake_wecom), clock)
    assert d.drain() == 1
    d.close()
    [delivery] = fake_wecom.delivered("message/update_template_card")
    assert delivery.json["response_code"] == "RC-PULSE-1" and delivery.json["agentid"] == 218
    assert delivery.json["button"] == {"replace_name": "已收到，谢谢（匿名）"}
    assert "wangwu" not in repr(delivery.json)  # no user id and no answer in the update
    with runtime.db.session() as s:
        assert s.execute(select(OutboxMessage.status)).scalar_one() == "sent"


# --- the dispatcher against the fake server: each message delivered exactly once -----------------
TEXTS = [f"提醒{i}：请在周五前报送材料" for i in range(6)]


def _queue(db, clock):
    with db.session() as s:
        for i, t in enumerate(TEXTS):
            enqueue(s, channel="user", recipient=f"u{i}", kind="reply", payload={"text": t}, at=clock())


def _run_until_sent(d, db, clock, rounds=12):
    for _ in range(rounds):
        d.run_once()
        with db.session() as s:
            left = s.execute(select(OutboxMessage).where(OutboxMessage.status != "sent")).scalars().all()
        if not left:
            return
        clock.advance(minutes=3)
    raise AssertionError(f"not all sent: {[(r.id, r.status, r.last_error) for r in left]}")


def _exactly_once(fake):
    counts = fake.delivered_counts("message/send")
    assert counts == {t: 1 for t in TEXTS}, counts


@pytest.mark.parametrize("failure", ["45009", "503", "42001"])
def test_errors_from_the_fake_are_retried_and_each_message_delivered_once(db, clock, fake_wecom, failure):
    _queue(db, clock)
    if failure == "45009":
        fake_wecom.fail_next(2, errcode=45009)
    elif failure == "503":
        fake_wecom.http_status_next(3, 503)
    sender = _sender(fake_wecom)
    if failure == "42001":
        sender.refresh_token()
        fake_wecom.expire_token()  # every call with the old token answers 42001
    d = _dispatcher(db, sender, clock)
    _run_until_sent(d, db, clock)
    d.close()
    _exactly_once(fake_wecom)
    if failure == "45009":
        assert d.stats.rate_limited >= 1 and d.stats.retried >= 2
    if failure == "503":
        assert d.stats.retried == 3
    if failure == "42001":  # refreshed once for all workers, not once per message
        assert len(fake_wecom.calls_to("gettoken")) == 2  # the first token and one refresh
        assert d.stats.token_expired == 0


def test_timeout_that_was_accepted_is_resent_and_dropped_by_the_duplicate_check(db, clock, fake_wecom):
    _queue(db, clock)
    fake_wecom.delay_next(1, 1.2)  # the first call answers after the client gave up, but delivers
    sender = _sender(fake_wecom, timeout=0.4)
    d = _dispatcher(db, sender, clock)
    d.run_once()
    deadline = time.monotonic() + 5
    while len(fake_wecom.delivered()) < len(TEXTS) and time.monotonic() < deadline:
        time.sleep(0.05)  # the slow call has delivered by now
    with db.session() as s:
        row = s.execute(select(OutboxMessage).where(OutboxMessage.status != "sent")).scalar_one()
        assert row.status == "pending" and row.sent_at is not None and "timed out" in row.last_error
    _run_until_sent(d, db, clock)
    d.close()
    _exactly_once(fake_wecom)
    assert fake_wecom.duplicates == 1  # the resend was answered ok and not delivered again
    dup = [c for c in fake_wecom.calls_to("message/send") if c.duplicate]
    assert len(dup) == 1 and dup[0].json["enable_duplicate_check"] == 1
    assert dup[0].json["duplicate_check_interval"] == sender.duplicate_check_interval


def test_crash_after_wecom_accepted_is_resent_inside_the_window_and_delivered_once(db, clock, fake_wecom):
    _queue(db, clock)
    sender = _sender(fake_wecom)


    d = _dispatcher(db, CrashAfterSend(sender, Crash), clock)
    with pytest.raises(Crash):
        d.run_once()
    d.close()
    time.sleep(0.2)  # let the pool's other calls finish
    with db.session() as s:
        assert {r.status for r in s.execute(select(OutboxMessage)).scalars()} <= {"sending"}
    clock.advance(minutes=5)  # a restart, still inside WeCom's 30-minute duplicate check
    d2 = _dispatcher(db, sender, clock)
    _run_until_sent(d2, db, clock)
    d2.close()
    _exactly_once(fake_wecom)
    assert d2.stats.recovered == len(TEXTS) and fake_wecom.duplicates >= 1


def test_crash_outside_the_window_is_parked_not_resent(db, clock, fake_wecom):
    _queue(db, clock)
    sender = _sender(fake_wecom, duplicate_check_interval=600)


    d = _dispatcher(db, CrashAfterSend(sender, Crash), clock)
    with pytest.raises(Crash):
        d.run_once()
    d.close()
    time.sleep(0.2)
    delivered = len(fake_wecom.delivered())
    clock.advance(minutes=30)  # down longer than the 10-minute interval
    d2 = _dispatcher(db, sender, clock)
    d2.run_once()
    d2.close()
    with db.session() as s:
        statuses = {r.status for r in s.execute(select(OutboxMessage)).scalars()}
    assert statuses == {"uncertain"}
    assert len(fake_wecom.delivered()) == delivered  # nothing resent blindly
    assert all(n == 1 for n in fake_wecom.delivered_counts().values())
