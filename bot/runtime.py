"""One place that builds the database, services and clients, shared by the app, CLI and jobs.

Group commit (callbacks): ``process_async`` hands each event to the runtime's writer threads
(one on SQLite, whose single write lock makes more pointless; four on PostgreSQL, to overlap
network round trips). A writer drains the queue, handles up to ``group_commit_max`` events in one transaction with a
SAVEPOINT per event (one bad event is rolled back alone and does not sink the batch), commits
once, and only then resolves each request's future, so an HTTP 200 is never given for an event
that is not durably stored. A request whose event is not committed within ``REPLY_DEADLINE`` is
answered 503 (``DeadlineMissed``), never 200: the platform retries and the dedupe absorbs it.

Bulk ingest: inside a batch, the pure work is done first (``handlers.dispatch.plan``: dedupe
key, text normalisation, command match, anonymity). Runs of plain-activity events (group
messages, member events, messages to the bot that match no command) are then stored with a few
multi-row statements (``handle_bulk``: processed_events, persons, groups, memberships, messages,
one counter UPDATE per group) instead of ~12 ORM statements each; commands keep the per-event
path (``handle_event`` in a SAVEPOINT), in order. Anonymous events (anonymous commands, pulse and
useless-card clicks) are taken out of the batch and each handled in its own transaction after
it, so no row of theirs shares a transaction (on PostgreSQL: an ``xmin``) with their author's
other events. If a bulk statement fails, that run is rolled back to its SAVEPOINT and handled
event by event. ``QUNZHI_BULK_INGEST=0`` turns the bulk path off. Why: a commit per request costs a WAL append + fsync (PostgreSQL) or
a write-lock hand-over between threads (SQLite) for every message; a batch pays it once.

Failure handling, in order:

* an event that raises inside its savepoint is retried alone, in its own transaction, after the
  batch commits (a lock conflict or deadlock with another instance usually clears); if it fails
  again its request fails (HTTP 500, WeCom retries it later; nothing was acknowledged);
* a batch whose commit (or savepoint machinery) fails is rolled back as a whole and every event
  in it is processed one by one in its own transaction, as without group commit.

``QUNZHI_GROUP_COMMIT=0`` turns it off (one transaction per request in the thread pool, used by
the ingest benchmark for the comparison); ``QUNZHI_GROUP_COMMIT_MAX`` sets the batch size and
``QUNZHI_GROUP_COMMIT_WRITERS`` the number of writer threads.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import re
import threading
import zlib
from datetime import datetime
from typing import Callable

from starlette.concurrency import run_in_threadpool

from bot.settings import Settings
from handlers.context import Services, utcnow
from handlers.dispatch import Planned, bulk_prefix, handle_bulk, handle_event, plan
from handlers.events import Event, Reply
from storage.db import Database
from storage.outbox import enqueue

log = logging.getLogger("qunzhi.runtime")

_SECRET_QUERY = re.compile(r"((?:access_token|corpsecret|secret|key)=)[^&\s\"']+", re.IGNORECASE)


class RedactSecrets(logging.Filter):
    """Blank ``access_token=``, ``corpsecret=`` … in log records: urllib3 logs every request URL at
    DEBUG (``qunzhi -v``), and WeCom puts the secret and access token in the query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a broken record is logging's problem, not ours
            return True
        if "=" in msg and _SECRET_QUERY.search(msg):
            record.msg, record.args = _SECRET_QUERY.sub(r"\1***", msg), None
        return True


def install_log_redaction() -> None:
    """Filter the loggers of the HTTP libraries the senders use (idempotent)."""
    for name in ("urllib3.connectionpool", "urllib3", "requests", "httpx", "httpcore", "wechatpy"):
        lg = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in lg.filters):
            lg.addFilter(RedactSecrets())


install_log_redaction()

REPLY_DEADLINE = 4.0  # seconds: WeCom drops the connection after 5
GROUP_COMMIT_MAX = 128  # events per transaction
BULK_MAX = 512  # events per bulk run (handlers.dispatch.handle_bulk)
# Writer threads: SQLite has one write lock, so one writer; on PostgreSQL each statement waits a
# network round trip, so a few writers overlap them (measured: one writer halved PostgreSQL's rate).
GROUP_COMMIT_WRITERS = {"sqlite": 1, "postgresql": 4}


def _env_flag(name: str, default: bool) -> bool:
    v = os.environ.get(name)
    if v is None or not v.strip():
        return default
    return v.strip().lower() not in ("0", "false", "no", "off")


class Runtime:
    def __init__(self, settings: Settings, *, db: Database | None = None,
                 clock: Callable[[], datetime] = utcnow, migrate: bool = True,
                 group_commit: bool | None = None, group_commit_max: int | None = None):
        self.settings = settings
        self.db = db or Database(settings.database_url, migrate=migrate)
        self.clock = clock
        self.services = Services(settings=settings, clock=clock)
        self.scheduler = None  # set by scheduler.service when running in-process
        self.group_commit = _env_flag("QUNZHI_GROUP_COMMIT", True) if group_commit is None else group_commit
        self.group_commit_max = max(1, group_commit_max or int(os.environ.get("QUNZHI_GROUP_COMMIT_MAX")
                                                               or GROUP_COMMIT_MAX))
        self.group_commit_writers = int(os.environ.get("QUNZHI_GROUP_COMMIT_WRITERS")
                                        or GROUP_COMMIT_WRITERS.get(self.db.dialect, 2))
        # QUNZHI_BULK_INGEST=0: every event of a batch through handle_event (for comparison/diagnosis).
        self.bulk = _env_flag("QUNZHI_BULK_INGEST", True)
        self._writer: _GroupWriter | None = None
        self._writer_lock = threading.Lock()

    def now(self) -> datetime:
        return self.clock()

    def process(self, event: Event) -> list[Reply]:
        """Handle one event in its own transaction (blocking)."""
        with self.db.session() as s:
            return handle_event(s, event, self.services)

    def submit(self, event: Event) -> concurrent.futures.Future:
        """Queue an event for the group-commit writer; the future resolves after its batch commits."""
        with self._writer_lock:
            if self._writer is None or not self._writer.alive:
                self._writer = _GroupWriter(self)
            writer = self._writer
        return writer.submit(event)

    def _use_group_commit(self) -> bool:
        # A test that replaces ``process`` on the instance (a spy) gets the per-event path it spies on.
        return self.group_commit and "process" not in self.__dict__

    async def process_async(self, event: Event, *, deadline: float = REPLY_DEADLINE,
                            reply_channel: str | None = None) -> list[Reply]:
        """Run the handler off the event loop and return its replies once the event is committed.

        If it misses the deadline, ``DeadlineMissed`` is raised and the adapter answers HTTP 503:
        nothing may be acknowledged before it is stored (if the process died after an early 200,
        WeCom would not retry and the message would be lost). WeCom retries the 503; once the
        first attempt commits, the retry is a duplicate (``processed_events``) and changes
        nothing. The first attempt's replies, when it finishes, go out through the outbox."""
        if self._use_group_commit():
            task = asyncio.wrap_future(self.submit(event))
        else:
            task = asyncio.ensure_future(run_in_threadpool(self.process, event))
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout=deadline)
        except asyncio.TimeoutError:
            log.warning("handler for %s missed the %.1fs deadline; replying via outbox", event.dedupe_key, deadline)
            task.add_done_callback(lambda t: self._late_reply(t, event, reply_channel))
            raise DeadlineMissed(event.dedupe_key) from None

    def close(self) -> None:
        """Stop the writer thread after it has finished what is queued."""
        with self._writer_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.stop()

    def _late_reply(self, task: asyncio.Future, event: Event, channel: str | None) -> None:
        """Done callback (on the event loop) of a handler that missed the deadline: queue its
        replies in the outbox, in a thread (a database write must not block the loop)."""
        if task.cancelled() or task.exception() is not None:
            log.error("late handler failed for %s: %r", event.dedupe_key,
                      None if task.cancelled() else task.exception())
            return
        replies = task.result()
        if replies:
            threading.Thread(target=self._enqueue_late, args=(event, replies, channel),
                             name="qunzhi-late-reply", daemon=True).start()

    def _enqueue_late(self, event: Event, replies: list[Reply], channel: str | None) -> None:
        extra = {}
        if event.data.get("response_url"):  # the AI bot answers late through the message's response_url
            extra = {"response_url": event.data.get("response_url"), "chatid": event.group_id}
        try:
            with self.db.session() as s:
                for i, r in enumerate(replies):
                    enqueue(s, channel=channel or "user", recipient=event.group_id or event.sender_id, kind="reply",
                            payload={"text": r.text, "card": r.card, "markdown": r.markdown, **extra},
                            at=self.clock(), dedupe_key=f"late:{event.dedupe_key}:{i}")
        except Exception:
            log.exception("could not queue the late replies of %s", event.dedupe_key)


class DeadlineMissed(Exception):
    """The event was not committed within the reply deadline: answer 503 so the platform retries."""


_STOP = object()


class _GroupWriter:
    """The writer thread(s) of one runtime, draining one queue (see the module docstring)."""

    def __init__(self, runtime: Runtime):
        self.rt = runtime
        n = max(1, runtime.group_commit_writers)
        # One queue per writer; a group's events always go to the same writer, so two writers'
        # open batches never wait on (or deadlock over) the same group row.
        self.queues: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(n)]
        self.threads = [threading.Thread(target=self._run, args=(q,), name=f"qunzhi-group-commit-{i}", daemon=True)
                        for i, q in enumerate(self.queues)]
        self.alive = True
        for t in self.threads:
            t.start()

    def submit(self, event: Event) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        shard = zlib.crc32((event.group_id or event.sender_id or "").encode()) % len(self.queues)
        self.queues[shard].put((event, fut))
        return fut

    def stop(self, timeout: float = 30.0) -> None:
        for q in self.queues:
            q.put(_STOP)
        for t in self.threads:
            t.join(timeout)

    def _run(self, q: queue.SimpleQueue) -> None:
        while True:
            item = q.get()
            if item is _STOP:
                break
            batch = [item]
            stop = False
            while len(batch) < self.rt.group_commit_max:
                try:
                    nxt = q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            batch = [(e, f) for e, f in batch if f.set_running_or_notify_cancel()]
            if batch:
                try:
                    self._run_batch(batch)
                except BaseException as e:  # never let the writer die with requests waiting
                    log.exception("group commit writer failed")
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(e)
            if stop:
                break
        self.alive = False

    def _run_batch(self, batch: list[tuple[Event, concurrent.futures.Future]]) -> None:
        rt = self.rt
        done: list[tuple[concurrent.futures.Future, list[Reply]]] = []
        retry: list[tuple[Event, concurrent.futures.Future]] = []
        plans: list[tuple[Planned, concurrent.futures.Future]] = []
        alone: list[tuple[Event, concurrent.futures.Future]] = []
        for event, fut in batch:  # the pure work first: no database, no lock held
            try:
                p = plan(event, rt.services)
            except Exception as e:
                log.warning("could not plan event %s (%r); handling it alone", event.dedupe_key, e)
                alone.append((event, fut))
                continue
            # An anonymous event shares no transaction with anyone's other events: on PostgreSQL
            # rows written in one transaction share xmin, which would link the answer to its author.
            (alone.append((event, fut)) if p.anonymous else plans.append((p, fut)))
        try:
            with rt.db.session() as s:
                if rt.db.dialect == "sqlite":
                    # pysqlite starts no transaction before the first DML: without an explicit
                    # BEGIN the first SAVEPOINT would open it and its RELEASE would commit it.
                    s.connection().exec_driver_sql("BEGIN IMMEDIATE")
                i = 0
                while i < len(plans):
                    j = i
                    while j < len(plans) and plans[j][0].bulk and j - i < BULK_MAX:
                        j += 1
                    k = i + (bulk_prefix(s, [p for p, _ in plans[i:j]]) if rt.bulk and j > i else 0)
                    if k > i:
                        self._bulk(s, plans[i:k], done, retry)
                        i = k
                        continue
                    p, fut = plans[i]
                    self._one(s, p.event, fut, done, retry)
                    i += 1
        except Exception as e:
            log.warning("batch of %d events failed to commit (%r); processing them one by one", len(batch), e)
            retry, done = [(p.event, f) for p, f in plans], []
        for fut, replies in done:  # committed: now the requests may be answered
            fut.set_result(replies)
        for event, fut in retry + alone:
            try:
                fut.set_result(rt.process(event))
            except Exception as e:
                log.error("event %s failed: %r", event.dedupe_key, e)
                fut.set_exception(e)

    def _one(self, s, event: Event, fut, done: list, retry: list) -> None:
        """The per-event path: ``handle_event`` inside its own SAVEPOINT."""
        try:
            with s.begin_nested():
                replies = handle_event(s, event, self.rt.services)
        except Exception as e:  # rolled back to the savepoint: only this event is lost
            log.warning("event %s failed inside a batch (%r); retrying it alone", event.dedupe_key, e)
            retry.append((event, fut))
            return
        done.append((fut, replies))

    def _bulk(self, s, segment: list[tuple[Planned, concurrent.futures.Future]], done: list, retry: list) -> None:
        """A run of plain-activity events in a few multi-row statements; if any statement fails the
        run is rolled back to its SAVEPOINT and its events go the per-event path one by one."""
        try:
            with s.begin_nested():
                results = handle_bulk(s, [p for p, _ in segment], self.rt.services)
        except Exception as e:
            log.warning("bulk ingest of %d events failed (%r); handling them one by one", len(segment), e)
            s.expire_all()
            for p, fut in segment:
                self._one(s, p.event, fut, done, retry)
            return
        done.extend((fut, replies) for (_, fut), replies in zip(segment, results))
