"""The outbox dispatcher under WeCom errors, crashes and rate limits."""
from datetime import datetime, timedelta, timezone

import pytest

from tests.fakes.crashing import CrashAfterSend
from sqlalchemy import select

from platforms.base import PermanentSendError, TransientSendError, error_for
from platforms.local.sender import RecordingSender
from scheduler.outbox import Dispatcher, RateLimiter
from storage.models import OutboxMessage
from storage.outbox import enqueue


class Crash(BaseException):
    """Simulates the process dying (not caught by the dispatcher's error handling)."""


def _queue(db, clock, n=1, recipient="zhang", channel="user", **payload):
    with db.session() as s:
        for i in range(n):
            enqueue(s, channel=channel, recipient=f"{recipient}{i}" if n > 1 else recipient, kind="reply",
                    payload=payload or {"text": f"你好{i}"}, at=clock())


def _rows(db):
    with db.session() as s:
        return s.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars().all()


def _dispatcher(db, sender, clock, **kw):
    kw.setdefault("global_per_second", None)
    return Dispatcher(db, sender, clock=clock, workers=4, **kw)


@pytest.mark.parametrize("error", [
    error_for(45009, "api freq out of limit"),
    TransientSendError("HTTP 502", http_status=502),
    error_for(42001, "access_token expired"),
])
def test_transient_errors_retry_with_backoff_then_send_once(db, clock, error):
    _queue(db, clock)
    sender = RecordingSender()
    sender.fail_next(2, error)
    d = _dispatcher(db, sender, clock)
    assert d.run_once() == 1
    row = _rows(db)[0]
    assert row.status == "pending" and row.attempts == 1 and row.next_attempt_at > clock()
    first_delay = row.next_attempt_at - clock()
    assert d.run_once() == 0  # not due yet (and a 45009 pauses everything)
    clock.advance(seconds=first_delay.total_seconds() + 1)
    d.run_once()
    row = _rows(db)[0]
    assert row.status == "pending" and row.attempts == 2
    assert row.next_attempt_at - clock() > first_delay * 1.2  # exponential
    clock.advance(hours=2)
    d.run_once()
    row = _rows(db)[0]
    assert row.status == "sent" and row.provider_id.startswith("rec-")
    assert len(sender.of("send_text")) == 3  # two failures, one success
    if error.rate_limited:
        assert d.stats.rate_limited == 2
    if error.token_expired:
        assert d.stats.token_expired == 2


def test_gives_up_to_dead_letter_after_bounded_attempts(db, clock):
    _queue(db, clock)
    sender = RecordingSender()
    sender.fail_next(10, TransientSendError("HTTP 503", http_status=503))
    d = _dispatcher(db, sender, clock, max_attempts=3)
    for _ in range(5):
        d.run_once()
        clock.advance(hours=2)
    row = _rows(db)[0]
    assert row.status == "dead" and row.attempts == 3 and "503" in row.last_error
    assert len(sender.of("send_text")) == 3


def test_permanent_error_is_dead_at_once(db, clock):
    _queue(db, clock)
    sender = RecordingSender()
    sender.fail_next(1, PermanentSendError("errcode 81013: user invalid", errcode=81013))
    _dispatcher(db, sender, clock).run_once()
    assert _rows(db)[0].status == "dead"


def test_timeout_is_not_resent_unless_duplicate_safe(db, clock):
    _queue(db, clock)
    sender = RecordingSender()
    sender.fail_next(1, TransientSendError("timed out", timeout=True))
    d = _dispatcher(db, sender, clock)
    d.run_once()
    clock.advance(hours=2)
    d.run_once()
    assert _rows(db)[0].status == "uncertain" and len(sender.calls) == 1
    # a sender using WeCom's enable_duplicate_check may resend safely, within its interval
    _queue(db, clock, recipient="li")
    sender.duplicate_check, sender.duplicate_check_interval = True, 1800
    sender.fail_next(1, TransientSendError("timed out", timeout=True))
    d.run_once()
    row = _rows(db)[1]
    assert row.status == "pending" and row.next_attempt_at < clock() + timedelta(seconds=1800)
    clock.set(row.next_attempt_at)
    d.run_once()
    assert _rows(db)[1].status == "sent"
    # ... but not once the interval has passed (WeCom would deliver it again)
    _queue(db, clock, recipient="wu")
    sender.fail_next(1, TransientSendError("timed out", timeout=True))
    d.run_once()
    d.paused_until = None
    clock.advance(minutes=29)
    d.run_once()
    row = _rows(db)[2]
    assert row.status == "uncertain" and "window" in row.last_error
    assert len(sender.calls) == 1 + 2 + 1  # never resent


def test_crash_between_send_and_commit_never_sends_twice(db, clock):
    sender = RecordingSender()


    for queue in (lambda: _queue(db, clock),
                  lambda: _queue(db, clock, channel="card_update", recipient="code-1", response_code="code-1",
                                 card={"replace_name": "已收到"})):
        queue()
        d = _dispatcher(db, CrashAfterSend(sender, Crash), clock)
        with pytest.raises(Crash):
            d.run_once()  # WeCom accepted it, then the process died before the commit
        d.close()
    assert [r.status for r in _rows(db)] == ["sending", "sending"]
    assert all(r.provider_id.startswith("idem:") for r in _rows(db))  # stored before the send
    assert len(sender.calls) == 2
    # restart: a fresh dispatcher, after the lease
    clock.advance(minutes=5)
    d2 = _dispatcher(db, sender, clock)
    d2.run_once()
    d2.run_once()
    user, card = _rows(db)
    assert user.status == "uncertain"  # WeCom may have accepted it: parked, not resent
    assert len(sender.of("send_text")) == 1
    assert card.status == "sent"  # a response code works once: resending is harmless
    assert len(sender.of("update_card")) == 2


def test_claimed_but_never_sent_rows_are_recovered(db, clock):
    _queue(db, clock, n=3)
    d = _dispatcher(db, RecordingSender(), clock)
    assert len(d.claim()) == 3  # crash right after claiming
    sender = RecordingSender()
    clock.advance(minutes=5)
    _dispatcher(db, sender, clock).drain()
    assert [r.status for r in _rows(db)] == ["sent"] * 3
    assert [r.attempts for r in _rows(db)] == [1, 1, 1]
    assert len(sender.calls) == 3


def test_per_recipient_rate_limit_defers_without_losing(db, clock):
    _queue(db, clock, n=1, recipient="robot", channel="aibot")
    with db.session() as s:
        for i in range(24):
            enqueue(s, channel="aibot", recipient="robot", kind="reply", payload={"text": f"m{i}"}, at=clock())
    sender = RecordingSender()
    sender.send_group_text = None
    d = _dispatcher(db, sender, clock)
    d.drain()
    assert len(sender.calls) == 20  # 20 a minute for a group robot
    assert d.stats.deferred == 5
    assert sum(r.status == "pending" for r in _rows(db)) == 5


def test_global_limiter_blocks():
    t = [0.0]
    slept = []
    lim = RateLimiter(10, monotonic=lambda: t[0], sleep=lambda s: (slept.append(s), t.__setitem__(0, t[0] + s)))
    for _ in range(25):
        lim.acquire()
    assert t[0] == pytest.approx(1.5, abs=0.05)


def test_warning_delivery_marks_warning_sent(db, clock):
    from storage import repo
    from storage.models import Group

    with db.session() as s:
        g = repo.ensure_group(s, group_id="g1", platform="wecom", at=clock(), name="防汛群")
        g.status, g.warned_at = "warned", clock()
        enqueue(s, channel="user", recipient="zhang", kind="warning",
                payload={"text": "提醒", "warning_groups": ["g1"]}, at=clock())
    _dispatcher(db, RecordingSender(), clock).run_once()
    with db.session() as s:
        assert s.get(Group, "g1").warning_sent_at == clock()
