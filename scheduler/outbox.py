"""The outbox dispatcher: claim rows, send each through its platform's sender, record the outcome.

Row states: ``pending`` → ``claimed`` → ``sending`` → ``sent`` | back to ``pending`` (retry)
| ``dead`` (permanent error or too many attempts) | ``uncertain`` (outcome unknown, see below)
| ``unreachable`` (no configured platform can carry it, see below).

Routing: the dispatcher holds one sender per channel (``scheduler.routing.build_senders``) and
sends each row through the route ``scheduler.routing.route`` picks: by channel; an AI bot answer
through its callback's ``response_url`` while it is unused and inside its hour (else, in a direct
chat, through the app when one is configured). A row no configured platform can carry (an AI
bot group answer whose response_url is used up or expired, a notice to a WeCom person in an
AI-bot-only deployment, a bridge row without ``QUNZHI_BRIDGE_URL``) is marked ``unreachable``
with the reason in ``last_error``, counted in ``stats.unreachable`` and logged, never left
pending or dropped silently; ``qunzhi scheduler outbox --requeue`` sends it again once the
platform is configured.

Exactly-once reasoning:

1. Claim: one UPDATE moves due rows to ``claimed`` and stores a client-side batch token
   ``idem:<token>`` in ``provider_id`` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two
   dispatchers never claim the same row; on SQLite the single UPDATE is atomic).
2. Before any HTTP call, the rows of the batch that the per-recipient limits let through are
   committed as ``sending`` in **one** UPDATE (``sent_at`` is set to the start of the first
   attempt that WeCom may have accepted, and kept across retries of such attempts).
3. The calls run in parallel; afterwards **one** transaction records every outcome
   (``sent`` with WeCom's msgid in ``provider_id``, retry, dead, uncertain) with executemany.

On restart, a row left ``claimed`` was never sent: it goes back to ``pending``. A row left in
``sending`` (or a send that timed out) may or may not have been accepted. It is resent only when
resending cannot double it:

* a card update (``card_update``: a response code works once), or
* a bridge row (``bridge``: each carries an ``instruction_id`` that stays the same across
  retries, and the bridge drops a repeat, ``platforms/bridge/BRIDGE.md``), or
* a ``message/send`` row (channel ``user``) through a sender that declares
  ``duplicate_check`` (``WeComSender``: ``enable_duplicate_check=1``), **while still inside its
  ``duplicate_check_interval``** measured from ``sent_at`` (minus ``DUPLICATE_MARGIN`` for clock
  skew and the HTTP timeout). WeCom then answers the resend with the first msgid and does not
  deliver it again.

Otherwise it becomes ``uncertain`` and is listed by ``qunzhi scheduler outbox``; an operator
requeues it by hand. The residual case is therefore: an uncertain ``message/send`` whose
dispatcher stays down (or keeps failing) past the interval, and every uncertain row of a sender
without duplicate check (appchat, aibot): there we choose "park and tell" over "maybe send
twice". An AI bot answer through a ``response_url`` is never resent after an unknown outcome
(the URL works once). Because step 2 covers the whole batch, a crash can leave up to ``batch`` rows in
``sending`` (not only the ones in flight); with duplicate check they are resent, without it
they all become ``uncertain``.
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
from typing import Callable, Mapping

from sqlalchemy import bindparam, func, select, update

from platforms.base import PermanentSendError, TransientSendError
from scheduler.routing import BRIDGE_INSTRUCTIONS, CHANNELS, Route, deliver, route
from storage.db import Database
from storage import identity
from storage.models import Group, OutboxMessage

log = logging.getLogger("qunzhi.outbox")


# WeCom limits (wecom.md; per-member figure from WeCom's "发送应用消息" page, unverified here).
PER_RECIPIENT = {"user": (30, 60.0), "aibot": (20, 60.0), "bridge": (20, 60.0), "appchat": (20, 60.0),
                 "feishu": (30, 60.0), "feishu_chat": (20, 60.0), "dingtalk": (20, 60.0)}
IDEMPOTENT_CHANNELS = {"card_update", "bridge", "feishu_card"}
# message/send (cards, text, markdown); Feishu's im/v1/messages with a content-derived uuid (1 hour)
DUPLICATE_CHECKED_CHANNELS = {"user", "feishu", "feishu_chat"}
DUPLICATE_MARGIN = timedelta(minutes=2)  # clock skew + an HTTP timeout, kept off the interval


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
    withdrawn: int = 0
    unreachable: int = 0
    errors: list[str] = field(default_factory=list)


class Dispatcher:
    def __init__(self, db: Database, senders, *, clock: Callable[[], datetime] | None = None,
                 batch: int = 200, workers: int = 16, max_attempts: int = 8,
                 base_delay: timedelta = timedelta(seconds=30), max_delay: timedelta = timedelta(hours=1),
                 rate_limit_pause: timedelta = timedelta(seconds=60), stuck_after: timedelta = timedelta(minutes=2),
                 global_per_second: float | None = 1500.0, limiter: RateLimiter | None = None):
        # ``senders``: channel → sender (``scheduler.routing.build_senders``); one sender alone
        # serves every channel (a recording sender in the demo and in unit tests).
        self.db = db
        self.senders: dict = dict(senders) if isinstance(senders, Mapping) else {c: senders for c in CHANNELS}
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.batch, self.workers, self.max_attempts = batch, workers, max_attempts
        self.base_delay, self.max_delay = base_delay, max_delay
        self.rate_limit_pause, self.stuck_after = rate_limit_pause, stuck_after
        self.limiter = limiter or RateLimiter(global_per_second)
        self.paused_until: datetime | None = None
        self.stats = Stats()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="outbox")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def resend_safe(self, row: OutboxMessage, now: datetime) -> bool:
        """May a row whose last attempt has an unknown outcome be sent again without doubling it?"""
        if row.channel in IDEMPOTENT_CHANNELS:
            return True
        sender = self.senders.get(row.channel)
        if row.channel not in DUPLICATE_CHECKED_CHANNELS or not getattr(sender, "duplicate_check", False):
            return False
        interval = timedelta(seconds=int(getattr(sender, "duplicate_check_interval", 0) or 0))
        first = row.sent_at or row.claimed_at
        return first is not None and now - _aware(first) < interval - DUPLICATE_MARGIN

    def _resend_deadline(self, row: OutboxMessage) -> datetime | None:
        sender = self.senders.get(row.channel)
        if row.channel not in DUPLICATE_CHECKED_CHANNELS or not getattr(sender, "duplicate_check", False):
            return None
        interval = timedelta(seconds=int(getattr(sender, "duplicate_check_interval", 0) or 0))
        first = row.sent_at or row.claimed_at
        return None if first is None else _aware(first) + interval - DUPLICATE_MARGIN

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
                if self.resend_safe(row, now):
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

    def claim(self) -> list["Claimed"]:
        """One statement: move due rows to ``claimed`` and return them (``RETURNING``, Core rows:
        no ORM objects to build for a batch that is only read)."""
        now = self.clock()
        token = "idem:" + secrets.token_hex(8)
        t = OutboxMessage.__table__
        due = (select(t.c.id).where(t.c.status == "pending", t.c.next_attempt_at <= now)
               .order_by(t.c.next_attempt_at, t.c.id).limit(self.batch))
        if self.db.dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        stmt = (update(t).where(t.c.id.in_(due.scalar_subquery()))
                .values(status="claimed", claimed_at=now, provider_id=token, attempts=t.c.attempts + 1)
                .returning(*[t.c[name] for name in Claimed.__slots__]))
        with self.db.engine.begin() as c:
            rows = [Claimed(*r) for r in c.execute(stmt)]
        rows.sort(key=lambda r: r.id)
        return rows

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
        claimed = len(rows)
        rows = self._screen(rows, now)
        if not rows:
            return claimed  # all withdrawn: handled; look for more
        # A row whose earlier attempt may have been accepted (``sent_at`` kept) and that can no
        # longer be resent without doubling it is parked, never sent.
        parked = {r.id for r in rows if r.sent_at is not None and not self.resend_safe(r, now)}
        routes = self._routes([r for r in rows if r.id not in parked], now)
        held = parked | {i for i, x in routes.items() if not isinstance(x, Route)}
        waits = {r.id: (0.0 if r.id in held else self.limiter.recipient_wait(r.channel, r.recipient)) for r in rows}
        go = [r for r in rows if waits[r.id] <= 0 and r.id not in held]
        self._mark_sending(go, now)
        sent = dict(zip((r.id for r in go), self._pool.map(self._send_one, go, [routes[r.id] for r in go])))
        results = [("uncertain", None) if r.id in parked else ("unreachable", routes[r.id]) if r.id in held
                   else ("defer", waits[r.id]) if waits[r.id] > 0 else sent[r.id] for r in rows]
        self._record(rows, results)
        return len(rows)

    def _routes(self, rows: list["Claimed"], now: datetime) -> dict[int, Route | str]:
        """The route of every row (``scheduler.routing.route``), with what it needs from the
        database: which ``response_url`` another row has used (rows in id order: the first row of
        a callback takes its URL, the others find it used) and which bridge recipients are groups."""
        urls = {r.payload["response_url"] for r in rows if r.channel == "aibot" and (r.payload or {}).get("response_url")}
        said = {r.recipient for r in rows
                if r.channel == "bridge" and (r.payload or {}).get("type") not in BRIDGE_INSTRUCTIONS}
        used: set[str] = set()
        groups: set[str] = set()
        if urls or said:
            t = OutboxMessage.__table__
            url = t.c.payload["response_url"].as_string()
            with self.db.engine.connect() as c:
                if urls:
                    used = set(c.execute(select(url).where(
                        t.c.channel == "aibot", t.c.status.in_(("sending", "sent", "uncertain")), url.in_(sorted(urls)),
                        t.c.id.not_in([r.id for r in rows]))).scalars())
                if said:
                    groups = set(c.execute(select(Group.id).where(Group.id.in_(sorted(said)))).scalars())
        # A person whose own channel has no sender here (a WeCom userid in a bridge-only
        # deployment) is reached on another platform they have an account on (storage.identity).
        via: dict[str, tuple[str, str] | None] = {}
        lost = {r.recipient for r in rows if r.channel == "user" and "user" not in self.senders}
        if lost and "bridge" in self.senders:
            with self.db.session() as s:
                via = {pid: identity.route_for_person(s, pid, ("bridge",)) for pid in sorted(lost)}
        out: dict[int, Route | str] = {}
        for r in rows:
            u = (r.payload or {}).get("response_url") if r.channel == "aibot" else None
            if r.channel == "user" and via.get(r.recipient):
                out[r.id] = Route("bridge_user", self.senders["bridge"], to=via[r.recipient][1])
                continue
            out[r.id] = x = route(r, self.senders, now, response_url_free=u not in used,
                                  bridge_group=r.recipient in groups)
            if u and isinstance(x, Route) and x.how == "aibot":
                used.add(u)
        return out

    def _screen(self, rows: list["Claimed"], now: datetime) -> list["Claimed"]:
        """Right before sending: re-check the premise of every notice a message carries
        (``storage.premises``). A digest that lost items is re-rendered from the rest; one that
        lost them all is not sent (status ``withdrawn``). A row an earlier attempt may already
        have delivered (``sent_at`` kept) is left as it is: changing it would defeat WeCom's
        duplicate check; a correction follows instead."""
        todo = [r for r in rows if r.sent_at is None and (r.payload or {}).get("notice_ids")]
        if not todo:
            return rows
        from storage.notices import digest_payload
        from storage.premises import screen

        dropped: set[int] = set()
        with self.db.session() as s:
            checked = screen(s, {r.id: list(r.payload["notice_ids"]) for r in todo}, now)
            for r in todo:
                keep, gone = checked[r.id]
                if not gone:
                    continue
                row = s.get(OutboxMessage, r.id)
                if not keep:
                    row.status, row.last_error = "withdrawn", "通知前提已不成立，未发送"
                    dropped.add(r.id)
                    self.stats.withdrawn += 1
                    continue
                payload = {**(r.payload or {}), **digest_payload(keep)}
                row.payload = r.payload = payload
                row.kind = r.kind = "digest" if len(keep) > 1 else keep[0].kind
                if len(keep) == 1:
                    keep[0].status = "sent"
        return [r for r in rows if r.id not in dropped]

    def drain(self, max_rounds: int = 10_000) -> int:
        total = 0
        for _ in range(max_rounds):
            n = self.run_once()
            if n == 0:
                break
            total += n
        return total

    def _mark_sending(self, rows: list[OutboxMessage], now: datetime) -> None:
        """One committed UPDATE for the batch, before any of its calls (see the docstring)."""
        if not rows:
            return
        with self.db.engine.begin() as c:
            c.execute(update(OutboxMessage)
                      .where(OutboxMessage.id.in_([r.id for r in rows]), OutboxMessage.status == "claimed")
                      .values(status="sending", sent_at=func.coalesce(OutboxMessage.sent_at, now)))
        for r in rows:
            r.status = "sending"
            r.sent_at = r.sent_at or now

    def _send_one(self, row: OutboxMessage, via: Route):
        self.limiter.acquire()
        try:
            result = deliver(via, row)
        except TransientSendError as e:
            return ("transient", e)
        except PermanentSendError as e:
            return ("permanent", e)
        except Exception as e:  # a bug or an unexpected library error: retry, bounded by attempts
            log.exception("outbox %s: unexpected error", row.id)
            return ("transient", e)
        return ("sent", result)

    def _backoff(self, attempts: int) -> timedelta:
        d = min(self.max_delay, self.base_delay * (2 ** max(0, attempts - 1)))
        return d * (0.8 + 0.4 * random.random())

    def _record(self, rows: list[OutboxMessage], results) -> None:
        """All outcomes of a batch in one transaction (executemany by primary key)."""
        from telemetry.metrics import OUTBOX_DELIVERIES as deliveries

        now = self.clock()
        updates: list[dict] = []
        delivered: list[OutboxMessage] = []
        for row, (outcome, detail) in zip(rows, results):
            u: dict = {"id": row.id}
            if outcome == "sent":
                u.update(status="sent", sent_at=now, last_error=None,
                         provider_id=str(getattr(detail, "msgid", None) or f"{row.provider_id}:{row.id}")[:128])
                self.stats.sent += 1
                if (row.payload or {}).get("warning_groups"):
                    delivered.append(row)
            elif outcome == "uncertain":
                u.update(status="uncertain", attempts=row.attempts - 1,
                         last_error="an earlier attempt may have been accepted and the duplicate-check window "
                                    "has passed: not resent; requeue by hand")
                self.stats.uncertain += 1
            elif outcome == "unreachable":
                u.update(status="unreachable", attempts=row.attempts - 1, last_error=str(detail)[:2000])
                self.stats.unreachable += 1
                log.warning("outbox %s (%s → %s) is unreachable: %s", row.id, row.channel, row.recipient, detail)
            elif outcome == "defer":
                u.update(status="pending", attempts=row.attempts - 1, next_attempt_at=now + timedelta(seconds=detail))
                self.stats.deferred += 1
            elif outcome == "permanent" or row.attempts >= self.max_attempts:
                u.update(status="dead", last_error=f"{type(detail).__name__}: {detail}"[:2000])
                self.stats.dead += 1
                log.error("outbox %s dead after %s attempts: %s", row.id, row.attempts, detail)
            elif getattr(detail, "timeout", False) and not self.resend_safe(row, now):
                u.update(status="uncertain",
                         last_error=f"timed out: WeCom may have accepted it; requeue by hand ({detail})"[:2000])
                self.stats.uncertain += 1
            else:
                self.stats.retried += 1
                nxt = now + self._backoff(row.attempts)
                u.update(status="pending", last_error=f"{type(detail).__name__}: {detail}"[:2000])
                if getattr(detail, "timeout", False):
                    # maybe accepted: keep sent_at, and retry while WeCom's duplicate check still covers it
                    deadline = self._resend_deadline(row)
                    if deadline is not None:
                        nxt = max(now, min(nxt, deadline - timedelta(seconds=30)))
                else:
                    u["sent_at"] = None  # an answer (errcode, HTTP 5xx) or no connection: not accepted
                if getattr(detail, "token_expired", False):
                    self.stats.token_expired += 1
                if getattr(detail, "rate_limited", False):  # 45009: everyone waits
                    self.stats.rate_limited += 1
                    self.paused_until = now + min(self.max_delay, self.rate_limit_pause * 2 ** max(0, row.attempts - 1))
                    nxt = max(nxt, self.paused_until)
                u["next_attempt_at"] = nxt
            deliveries.labels(row.channel, "deferred" if outcome == "defer"
                              else "retry" if u["status"] == "pending" else u["status"]).inc()
            updates.append(u)
        t = OutboxMessage.__table__
        with self.db.session() as s:
            for cols, params in _group_by_keys(updates).items():
                stmt = (update(t).where(t.c.id == bindparam("_id"))
                        .values({c: bindparam(c) for c in cols if c != "_id"}))
                s.execute(stmt, params)
            for r in delivered:
                _after_delivery(s, r, now)


class Claimed:
    """A claimed outbox row as the dispatcher needs it (a plain object, not an ORM instance)."""

    __slots__ = ("id", "channel", "recipient", "kind", "payload", "attempts", "provider_id",
                 "claimed_at", "sent_at", "status", "created_at")

    def __init__(self, *values):
        for name, v in zip(self.__slots__, values):
            setattr(self, name, v)

    def __repr__(self) -> str:
        return f"<Claimed #{self.id} {self.channel}:{self.recipient} {self.status}>"


def _group_by_keys(rows: list[dict]) -> dict[tuple, list[dict]]:
    """executemany needs the same columns in every parameter set (``_id`` is the row's id)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        r["_id"] = r.pop("id")
        groups.setdefault(tuple(sorted(r)), []).append(r)
    return groups


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


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
