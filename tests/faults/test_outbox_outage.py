"""Fake WeCom misbehaving for a while (timeouts, 5xx, 45009 rate limit, expired tokens) against the
real WeComSender over HTTP: the outbox retries, every message is delivered exactly once after
WeCom recovers, none is lost or parked. QUNZHI_FAULT_OUTBOX (heavy: 2000) sets the count."""
from __future__ import annotations

import os
from datetime import timedelta

from sqlalchemy import select

from platforms.wecom.sender import WeComSender
from scheduler.outbox import Dispatcher
from storage.models import OutboxMessage
from storage.outbox import enqueue
from tests.conftest import make_settings

N = int(os.environ.get("QUNZHI_FAULT_OUTBOX", "120"))


def test_outage_then_each_message_delivered_exactly_once(db, clock, fake_wecom):
    with db.session() as s:
        for i in range(N):
            enqueue(s, channel="user", recipient=f"cadre{i % 40}", kind="reply", payload={"text": f"通知{i}"},
                    at=clock())
    sender = WeComSender(make_settings(wecom_api_base=fake_wecom.base_url), timeout=0.5)
    d = Dispatcher(db, sender, clock=clock, workers=4, global_per_second=None)
    # the outage, in the order WeCom would show it
    fake_wecom.delay_next(4, 1.5)          # timeouts (the sender waits 0.5 s): outcome unknown
    fake_wecom.http_status_next(8, 502)    # gateway errors
    fake_wecom.fail_next(8, 45009)         # rate limited
    rounds = 0
    while rounds < 400:
        rounds += 1
        if rounds == 2:
            fake_wecom.expire_token()      # 42001 on the next calls: refresh and retry
        if rounds == 5:
            fake_wecom.http_status_next(5, 503)
        d.run_once()
        with db.session() as s:
            left = s.execute(select(OutboxMessage).where(OutboxMessage.status.in_(("pending", "sending")))).all()
        if not left:
            break
        clock.advance(minutes=2)
    d.close()
    with db.session() as s:
        rows = s.execute(select(OutboxMessage)).scalars().all()
    statuses = {r.status for r in rows}
    assert statuses == {"sent"}, {r.status: r.last_error for r in rows if r.status != "sent"}
    counts = fake_wecom.delivered_counts()
    assert {f"通知{i}" for i in range(N)} == set(counts), "nothing lost"
    assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}
    assert d.stats.rate_limited >= 1 and d.stats.retried >= 1
    assert len(fake_wecom.calls_to("gettoken")) >= 2, "the expired token was refreshed"
