"""AI bot answers leave through their callback's response_url (a fake on localhost that, like
WeCom, accepts each URL once and within an hour), not through WeCom message/send; what can no
longer use it goes to a person through the app, or is reported unreachable."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from scheduler.outbox import Dispatcher
from scheduler.routing import build_senders
from storage.models import OutboxMessage
from storage.outbox import enqueue
from tests.conftest import make_settings

AIBOT_ONLY = dict(wecom_corp_id="", wecom_token="", wecom_aes_key="", bridge_secret="")


def _dispatcher(db, settings, clock):
    return Dispatcher(db, build_senders(settings), clock=clock, workers=2, global_per_second=None)


def _reply(db, clock, url, *, chat="wrkG1", recipient=None, at=None, **payload):
    with db.session() as s:
        enqueue(s, channel="aibot", recipient=recipient or chat or "zhangsan", kind="reply", at=at or clock(),
                payload={"text": "", "card": None, "markdown": False, **payload, "response_url": url, "chatid": chat})


def _rows(db):
    with db.session() as s:
        return s.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars().all()


def test_a_reply_goes_through_its_response_url_once(db, clock, fake_aibot, fake_wecom):
    settings = make_settings(wecom_api_base=fake_wecom.base_url)  # the app is configured too: still the URL
    url = fake_aibot.issue()
    _reply(db, clock, url, text="“[点此](http://x)”群*已*登记")
    _reply(db, clock, fake_aibot.issue(), card={"card_type": "button_interaction", "task_id": "keep:1"})
    d = _dispatcher(db, settings, clock)
    assert d.drain() == 2
    d.close()
    md, card = sorted(fake_aibot.delivered, key=lambda x: x.json["msgtype"])  # sent in parallel
    assert md.json == {"msgtype": "markdown", "markdown": {"content": "“\\[点此\\](http://x)”群\\*已\\*登记"}}
    assert card.json == {"msgtype": "template_card",
                         "template_card": {"card_type": "button_interaction", "task_id": "keep:1"}}
    assert [r.status for r in _rows(db)] == ["sent", "sent"]
    assert fake_wecom.calls_to("message/send") == [] and fake_wecom.calls_to("appchat/send") == []


def test_a_second_reply_for_the_same_callback_in_a_group_is_unreachable(db, clock, fake_aibot, caplog):
    url = fake_aibot.issue()
    _reply(db, clock, url, text="第一条")
    _reply(db, clock, url, card={"task_id": "keep:2"})
    d = _dispatcher(db, make_settings(**AIBOT_ONLY), clock)
    with caplog.at_level("WARNING", logger="qunzhi.outbox"):
        d.drain()
    # and again later: the used URL is found used in the database, not only within one batch
    _reply(db, clock, url, text="第三条")
    d.drain()
    d.close()
    assert [x.json["markdown"]["content"] for x in fake_aibot.delivered] == ["第一条"]
    assert len(fake_aibot.calls) == 1  # the used URL is never tried again
    rows = _rows(db)
    assert [r.status for r in rows] == ["sent", "unreachable", "unreachable"]
    assert "response_url" in rows[1].last_error and "群聊" in rows[1].last_error
    assert d.stats.unreachable == 2 and caplog.text.count("unreachable") == 2


def test_after_its_hour_a_direct_reply_goes_through_the_app_and_a_group_reply_is_unreachable(
        db, clock, fake_aibot, fake_wecom):
    settings = make_settings(wecom_api_base=fake_wecom.base_url)
    old = clock() - timedelta(minutes=58)
    _reply(db, clock, fake_aibot.issue(), chat=None, recipient="zhangsan", at=old, text="迟到的回复")
    _reply(db, clock, fake_aibot.issue(), chat="wrkG1", at=old, text="迟到的群回复")
    d = _dispatcher(db, settings, clock)
    d.drain()
    d.close()
    assert fake_aibot.calls == []
    [sent] = fake_wecom.delivered("message/send")
    assert sent.json["touser"] == "zhangsan" and sent.json["text"]["content"] == "迟到的回复"
    assert [r.status for r in _rows(db)] == ["sent", "unreachable"]


def test_a_5xx_is_retried_and_the_answer_delivered_once(db, clock, fake_aibot):
    _reply(db, clock, fake_aibot.issue(), text="稍后回复")
    fake_aibot.status_next(1, 502)
    d = _dispatcher(db, make_settings(**AIBOT_ONLY), clock)
    d.run_once()
    assert _rows(db)[0].status == "pending"
    clock.advance(minutes=2)
    d.drain()
    d.close()
    assert [r.status for r in _rows(db)] == ["sent"]
    assert len(fake_aibot.delivered) == 1 and len(fake_aibot.calls) == 2


def test_a_timeout_that_used_the_url_is_parked_not_resent(db, clock, fake_aibot):
    """The call that timed out may have used the URL (here it did): never try it a second time."""
    import time

    from platforms.aibot.sender import AibotSender

    _reply(db, clock, fake_aibot.issue(), text="慢回复")
    fake_aibot.delay_next(1, 1.0)
    d = Dispatcher(db, {"aibot": AibotSender(timeout=0.3)}, clock=clock, workers=1, global_per_second=None)
    d.drain()
    clock.advance(minutes=10)
    d.drain()
    d.close()
    deadline = time.monotonic() + 5
    while not fake_aibot.delivered and time.monotonic() < deadline:
        time.sleep(0.05)
    [row] = _rows(db)
    assert row.status == "uncertain" and d.stats.uncertain == 1
    assert len(fake_aibot.calls) == 1 and len(fake_aibot.delivered) == 1
