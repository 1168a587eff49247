"""The outbox dispatcher: claim rows, send them through a ``Sender``, record the outcome.

Row states: ``pending`` → ``claimed`` → ``sending`` → ``sent`` | back to ``pending`` (retry)
| ``dead`` (permanent error or too many attempts) | ``uncertain`` (outcome unknown, see below).

Exactly-once reasoning (WeCom has no idempotency key):

1. Claim: one UPDATE moves due rows to ``claimed`` and stores a client-side idempotency id
   ``idem:<batch token>`` in ``provider_id`` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two
   dispatchers never claim the same row; on SQLite the single UPDATE is atomic).
2. Right before its HTTP call, a row is committed as ``sending`` (one short UPDATE).
3. After WeCom answers, the row is committed as ``sent`` with WeCom's msgid in ``provider_id``.

On restart, a row left ``claimed`` was never sent: it goes back to ``pending``. A row left in
``sending`` (or a send that timed out) may or may not have been accepted. Such a row is resent
only when resending cannot double it: a card update (a response code works once) or a sender
that declares ``duplicate_check = True`` (WeCom's ``enable_duplicate_check`` drops an identical
message within ``duplicate_check_interval``, at most 4 hours). Otherwise it becomes
``uncertain`` and is listed by ``qunzhi scheduler outbox``; an operator requeues it by hand.
The residual window is the few milliseconds between WeCom's answer and step 3's commit (or
a timeout): there we choose "park and tell" over "maybe send twice".
"""
from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import select, update

from storage.db import Database
from storage.models import OutboxMessage

log = logging.getLogger("qunzhi.outbox")

try:  # the senders package defines the contract; tolerate its absence in isolation
    from bot.senders.base import PermanentSendError, TransientSendError
except ImportError:  # pragma: no cover
    class TransientSendError(Exception):
        rate_limited = token_expired = timeout = False

    class PermanentSendError(Exception):
        pass

# WeCom limits (wecom.md; per-member figure from WeCom's "发送应用消息" page, unverified here).
PER_RECIPIENT = {"user": (30, 60.0), "aibot": (20, 60.0), "bridge": (20, 60.0), "appchat": (20, 60.0)}
IDEMPOTENT_CHANNELS = {"card_update"}


class RateLimiter:
    """A global token bucket plus sliding-window limits per (channel, recipient)."""

    def __init__(self, global_per_second: float | None, per_recipient=PER_RECIPIENT,
                 monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.rate = global_per_second
        self.per_recipient = per_recipient
        self.monotonic, self.sleep = monotonic, sleep
        self.tokens = float(global_per_second or 0)
        self.last = monotonic()
        self.windows: dict[tuple[str, str], deque] = defaultdict(deque)
        self.lock = threading.Lock()

    def recipient_wait(self, channel: str, recipient: str) -> float:
        """0 and the send is counted, or the seconds until this recipient may get another message."""
        limit = self.per_recipient.get(channel)
        if not limit:
            return 0.0
        n, window = limit
        now = self.monotonic()
        with self.lock:
            q = self.windows[(channel, recipient)]
            while q and now - q[0] >= window:
                q.popleft()
            if len(q) >= n:
                return window - (now - q[0])
            q.append(now)
            return 0.0

    def acquire(self) -> None:
        """Block until the global bucket allows one more call."""
        if not self.rate:
            return
        while True:
            with self.lock:
                now = self.monotonic()
                self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
                self.last = now
                if self.tokens >= 1 - 1e-9:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / self.rate
            self.sleep(wait)


@dataclass
class Stats:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    uncertain: int = 0
    rate_limited: int = 0
    token_expired: int = 0
    deferred: int = 0
    recovered: int = 0
    errors: list[str] = field(default_factory=list)


def deliver(sender, row: OutboxMessage):
    """One outbox row → one Sender call (returns the SendResult)."""
    p = row.payload or {}
    if row.channel == "card_update":
        return sender.update_card(p["response_code"], p["card"])
    if row.channel == "appchat":
        return sender.appchat_send_text(row.recipient, p.get("text", ""))
    if row.channel == "bridge":
        return sender.send_group_text(row.recipient, p.get("text", ""), instruction_id=f"outbox-{row.id}")
    to = [row.recipient]
    if p.get("card"):
        return sender.send_card(to, p["card"])
    if p.get("markdown"):
        return sender.send_markdown(to, p["text"])
    return sender.send_text(to, p.get("text", ""))


class Dispatcher:
    def __init__(self, db: Database, sender, *, clock: Callable[[], datetime] | None = None,
                 batch: int = 200, workers: int = 16, max_attempts: int = 8,
                 base_delay: timedelta = timedelta(seconds=30), max_delay: timedelta = timedelta(hours=1),
                 rate_limit_pause: timedelta = timedelta(seconds=60), stuck_after: timedelta = timedelta(minutes=2),
                 global_per_second: float | None = 1500.0, limiter: RateLimiter | None = None,
                 after_send: Callable[[OutboxMessage], None] | None = None):
        self.db, self.sender = db, sender
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.batch, self.workers, self.max_attempts = batch, workers, max_attempts
        self.base_delay, self.max_delay = base_delay, max_delay
        self.rate_limit_pause, self.stuck_after = rate_limit_pause, stuck_after
        self.limiter = limiter or RateLimiter(global_per_second)
        self.paused_until: datetime | None = None
        self.stats = Stats()
        self.after_send = after_send  # test hook: called after WeCom accepted, before the commit
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="outbox")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    @property
    def resend_safe(self) -> bool:
        return bool(getattr(self.sender, "duplicate_check", False))

    # --- claiming and recovery ---------------------------------------------------------------
    def recover(self) -> int:
        """Resolve rows a crashed dispatcher left behind (see the module docstring)."""
        now = self.clock()
        cutoff = now - self.stuck_after
        with self.db.session() as s:
            back = s.execute(update(OutboxMessage).where(OutboxMessage.status == "claimed",
                                                         OutboxMessage.claimed_at < cutoff)
                             .values(status="pending", attempts=OutboxMessage.attempts - 1, next_attempt_at=now)
                             ).rowcount or 0
            stuck = s.execute(select(OutboxMessage).where(OutboxMessage.status == "sending",
                                                          OutboxMessage.claimed_at < cutoff)).scalars().all()
            for row in stuck:
                if row.channel in IDEMPOTENT_CHANNELS or self.resend_safe:
                    row.status, row.next_attempt_at = "pending", now
                    row.last_error = "resent after a crash (duplicate-safe)"
                    back += 1
                else:
                    row.status = "uncertain"
                    row.last_error = "crashed between send and commit: WeCom may have accepted it; requeue by hand"
                    self.stats.uncertain += 1
                    log.error("outbox %s is uncertain (crash during send); not resending", row.id)
        self.stats.recovered += back
        return back

    def claim(self) -> list[OutboxMessage]:
        now = self.clock()
        token = "idem:" + secrets.token_hex(8)
        with self.db.session() as s:
            due = (select(OutboxMessage.id).where(OutboxMessage.status == "pending",
                                                  OutboxMessage.next_attempt_at <= now)
                   .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(self.batch))
            if s.get_bind().dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            s.execute(update(OutboxMessage).where(OutboxMessage.id.in_(due.scalar_subquery()))
                      .values(status="claimed", claimed_at=now, provider_id=token,
                              attempts=OutboxMessage.attempts + 1)
                      .execution_options(synchronize_session=False))
            rows = s.execute(select(OutboxMessage).where(OutboxMessage.provider_id == token,
                                                         OutboxMessage.status == "claimed")
                             .order_by(OutboxMessage.id)).scalars().all()
            for r in rows:
                s.expunge(r)
            return list(rows)

    # --- one pass ----------------------------------------------------------------------------
    def run_once(self) -> int:
        """Recover, claim a batch, send it; returns how many rows were handled."""
        now = self.clock()
        if self.paused_until and now < self.paused_until:
            return 0
        self.recover()
        rows = self.claim()
        if not rows:
            return 0
        results = list(self._pool.map(self._send_one, rows))
        self._record(rows, results)
        return len(rows)

    def drain(self, max_rounds: int = 10_000) -> int:
        total = 0
        for _ in range(max_rounds):
            n = self.run_once()
            if n == 0:
                break
            total += n
        return total

    def _send_one(self, row: OutboxMessage):
        wait = self.limiter.recipient_wait(row.channel, row.recipient)
        if wait > 0:
            return ("defer", wait)
        self.limiter.acquire()
        with self.db.engine.begin() as c:  # commit "sending" before the call (see docstring)
            c.execute(update(OutboxMessage).where(OutboxMessage.id == row.id, OutboxMessage.status == "claimed")
                      .values(status="sending"))
        try:
            result = deliver(self.sender, row)
        except TransientSendError as e:
            return ("transient", e)
        except PermanentSendError as e:
            return ("permanent", e)
        except Exception as e:  # a bug or an unexpected library error: retry, bounded by attempts
            log.exception("outbox %s: unexpected error", row.id)
            return ("transient", e)
        if self.after_send is not None:
            self.after_send(row)  # tests simulate a crash here
        return ("sent", result)

    def _backoff(self, attempts: int) -> timedelta:
        d = min(self.max_delay, self.base_delay * (2 ** max(0, attempts - 1)))
        return d * (0.8 + 0.4 * random.random())

    def _record(self, rows: list[OutboxMessage], results) -> None:
        now = self.clock()
        sent_rows: list[OutboxMessage] = []
        with self.db.session() as s:
            for row, (outcome, detail) in zip(rows, results):
                r = s.get(OutboxMessage, row.id)
                if outcome == "sent":
                    r.status, r.sent_at, r.last_error = "sent", now, None
                    r.provider_id = str(getattr(detail, "msgid", None) or f"{row.provider_id}:{row.id}")[:128]
                    self.stats.sent += 1
                    sent_rows.append(r)
                elif outcome == "defer":
                    r.status, r.attempts = "pending", r.attempts - 1
                    r.next_attempt_at = now + timedelta(seconds=detail)
                    self.stats.deferred += 1
                elif outcome == "permanent" or r.attempts >= self.max_attempts:
                    r.status, r.last_error = "dead", f"{type(detail).__name__}: {detail}"[:2000]
                    self.stats.dead += 1
                    log.error("outbox %s dead after %s attempts: %s", r.id, r.attempts, detail)
                elif getattr(detail, "timeout", False) and not (row.channel in IDEMPOTENT_CHANNELS
                                                                 or self.resend_safe):
                    r.status = "uncertain"
                    r.last_error = f"timed out: WeCom may have accepted it; requeue by hand ({detail})"[:2000]
                    self.stats.uncertain += 1
                else:
                    self.stats.retried += 1
                    r.last_error = f"{type(detail).__name__}: {detail}"[:2000]
                    r.status = "pending"
                    r.next_attempt_at = now + self._backoff(r.attempts)
                    if getattr(detail, "token_expired", False):
                        self.stats.token_expired += 1
                    if getattr(detail, "rate_limited", False):  # 45009: everyone waits
                        self.stats.rate_limited += 1
                        self.paused_until = now + min(self.max_delay, self.rate_limit_pause * 2 ** max(0, r.attempts - 1))
                        r.next_attempt_at = max(r.next_attempt_at, self.paused_until)
            for r in sent_rows:
                _after_delivery(s, r, now)


def _after_delivery(session, row: OutboxMessage, now: datetime) -> None:
    """A delivered message that carried a warning notice starts the grace period."""
    groups = (row.payload or {}).get("warning_groups") or []
    if not groups:
        return
    try:
        from storage.lifecycle import mark_warning_sent
    except ImportError:
        log.warning("storage.lifecycle.mark_warning_sent not available; warning_sent_at not set for %s", groups)
        return
    for gid in groups:
        mark_warning_sent(session, gid, now)
