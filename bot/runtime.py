"""One place that builds the database, services and clients, shared by the app, CLI and jobs.

Group commit (callbacks): ``process_async`` hands each event to the runtime's writer, sharded by
group (one shard by default: SQLite has a single write lock, and on PostgreSQL a batch of plain
activity is one statement, so one shard with bigger batches costs less CPU than several with
small ones; ``QUNZHI_GROUP_COMMIT_WRITERS`` sets more). The writer is a separate process by default
(``QUNZHI_INGEST_WRITER=process``, ``bot/writer.py``), so storing events does not compete with
HTTP and crypto for the web process's interpreter lock; threads in the web process otherwise.
A writer shard handles up to ``group_commit_max`` waiting events in one transaction with a
SAVEPOINT per event (one bad event is rolled back alone and does not sink the batch), commits
once, and only then resolves each request's future, so an HTTP 200 is never given for an event
that is not durably stored. A request whose event is not committed within its platform's reply
deadline (``Platform.reply_deadline``: WeCom 4 s, as it gives up after 5) is answered 503
(``DeadlineMissed``), never 200: the platform retries and the dedupe absorbs it.

Bulk ingest: inside a batch, the pure work is done first (``handlers.dispatch.plan``: dedupe
key, text normalisation, command match, anonymity). Runs of plain-activity events (group
messages, member events, messages to the bot that match no command) are then stored with a few
multi-row statements (``storage.ingest.store``: processed_events, persons, groups, memberships,
messages, the groups' counters; on PostgreSQL one statement) instead of ~12 ORM statements each;
commands keep the per-event path (``handle_event`` in a SAVEPOINT), in order. Anonymous events
(anonymous commands, pulse and useless-card clicks) are taken out of the batch and each handled
in its own transaction after it, so no row of theirs shares a transaction (on PostgreSQL: an
``xmin``) with their author's other events. If a bulk statement fails, that run is rolled back to its SAVEPOINT and handled
event by event. ``QUNZHI_BULK_INGEST=0`` turns the bulk path off. Why: a commit per request
costs a WAL append + fsync (PostgreSQL) or a write-lock hand-over (SQLite) for every message; a
batch pays it once.

Failure handling, in order:

* an event that raises inside its savepoint is retried alone, in its own transaction, after the
  batch commits (a lock conflict or deadlock with another instance usually clears); if it fails
  again its request fails (HTTP 500, WeCom retries it later; nothing was acknowledged);
* a batch whose commit (or savepoint machinery) fails is rolled back as a whole and every event
  in it is processed one by one in its own transaction, as without group commit.

``QUNZHI_GROUP_COMMIT=0`` turns it off (one transaction per request in the thread pool, used by
the ingest benchmark for the comparison); ``QUNZHI_GROUP_COMMIT_MAX`` sets the batch size and
``QUNZHI_GROUP_COMMIT_WRITERS`` the number of writer shards.
"""
from __future__ import annotations

import asyncio
import logging
import re
import threading
from datetime import datetime
from typing import Callable

from starlette.concurrency import run_in_threadpool

from config.settings import Settings
from bot.writer import RESTART_WINDOW, Handling, ProcessWriter, ThreadWriter
from bot.writer import freeze_startup_objects  # noqa: F401  (the CLI starts the web app with it)
from handlers.context import Services, utcnow
from platforms.capabilities import table as capability_table
from handlers.dispatch import stored_key
from governance.events import Event, Reply
from platforms import registry
from platforms.base import DeadlineMissed
from storage.db import Database
from storage.outbox import enqueue
from storage.repo import remember_reply

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

# Writer shards. SQLite has one write lock, so one. On PostgreSQL a batch of plain activity is one
# autocommit statement (``storage.ingest.one_statement``): with four shards the batches
# were a quarter the size and the fixed cost per batch dominated (ingest benchmark, one run:
# 4 shards 0.56 of bare, 1 shard 0.65-0.79; average batch 2.7 against 9).
GROUP_COMMIT_WRITERS = {"sqlite": 1, "postgresql": 1}


class Runtime(Handling):
    def __init__(self, settings: Settings, *, db: Database | None = None,
                 clock: Callable[[], datetime] = utcnow, migrate: bool = True,
                 group_commit: bool | None = None, group_commit_max: int | None = None):
        ingest = settings.ingest
        super().__init__(settings, db or Database(settings.database_url, migrate=migrate),
                         Services(settings=settings, capabilities=capability_table(settings), clock=clock),
                         bulk=ingest.bulk,
                         group_commit_max=max(1, group_commit_max or ingest.group_commit_max))
        self.clock = clock
        import nlu

        nlu.warm_up()  # the parser's grammar and dictionary (about a second, once), before traffic
        self.scheduler = None  # set by scheduler.service when running in-process
        self.group_commit = ingest.group_commit if group_commit is None else group_commit
        self.group_commit_writers = ingest.group_commit_writers or GROUP_COMMIT_WRITERS.get(self.db.dialect, 2)
        # The writer is what QUNZHI_INGEST_WRITER says. A writer process opens the database by its
        # URL and runs on the real clock, so it cannot serve a runtime given its database or its
        # clock, nor an in-memory database: such a runtime refuses to start one (``writer_refusal``).
        self.writer_kind = ingest.writer
        self.writer_refusal = None
        if self.writer_kind == "process":
            if db is not None or clock is not utcnow:
                self.writer_refusal = "注入的数据库或时钟无法交给写入进程"
            elif _in_memory(self.db.url):
                self.writer_refusal = "内存数据库无法与写入进程共享"
        self._writer: ThreadWriter | ProcessWriter | None = None
        self._writer_lock = threading.Lock()
        self._writer_deaths: list[float] = []
        self._callback_counts: dict[tuple[str, str], object] = {}
        self._deadlines: dict[str | None, float] = {}  # event platform -> its platform's reply deadline

    def now(self) -> datetime:
        return self.clock()

    def writer(self) -> ThreadWriter | ProcessWriter:
        """The live group-commit writer, started on first use (and again after a writer process
        died; after two deaths within ``RESTART_WINDOW`` seconds, threads from then on)."""
        w = self._writer
        if w is not None and w.alive:  # the common case, without the lock
            return w
        with self._writer_lock:
            w = self._writer
            if w is not None and w.alive:
                return w
            if isinstance(w, ProcessWriter):
                w.reap()
            if isinstance(w, ProcessWriter) and w.died_at is not None:
                now = w.died_at
                self._writer_deaths = [t for t in self._writer_deaths if now - t < RESTART_WINDOW] + [now]
                if len(self._writer_deaths) >= 2:
                    log.error("the writer process died twice within %.0fs; storing events with writer "
                              "threads in the web process from now on", RESTART_WINDOW)
                    self.writer_kind = "thread"
                else:
                    log.warning("the writer process ended; starting a new one")
            if self.writer_kind == "process" and self.writer_refusal:
                raise WriterUnavailable(f"QUNZHI_INGEST_WRITER=process 无法使用：{self.writer_refusal}；"
                                        "请设置 QUNZHI_INGEST_WRITER=thread")
            shards = self.group_commit_writers
            self._writer = ProcessWriter(self, shards) if self.writer_kind == "process" else ThreadWriter(self, shards)
            return self._writer

    async def start_writer(self) -> None:
        """Start the writer before the first request (the web app's startup): a writer process
        takes a second or two to import and connect. If it cannot start, fall back to threads."""
        if not self.group_commit or self.writer_kind != "process":
            return
        w = self.writer()
        try:
            await w.start()
        except Exception as e:
            log.error("the writer process did not start (%r); storing events with writer threads", e)
            with self._writer_lock:
                self.writer_kind = "thread"
                self._writer = None
            w.stop(timeout=5)
            return
        log.info("ingest writer: a separate process (pid %s), %d lane(s)", w.proc.pid, len(w.lanes))

    def reply_deadline(self, platform: str | None) -> float:
        """The reply deadline of the platform an event came from (``platforms.registry``)."""
        deadline = self._deadlines.get(platform)
        if deadline is None:
            deadline = self._deadlines[platform] = registry.reply_deadline(platform)
        return deadline

    async def process_async(self, event: Event, *, deadline: float | None = None,
                            reply_channel: str | None = None) -> list[Reply]:
        """Run the handler off the event loop and return its replies once the event is committed.

        If it misses the deadline (None: its platform's, ``reply_deadline``), ``DeadlineMissed``
        is raised and the adapter answers HTTP 503:
        nothing may be acknowledged before it is stored (if the process died after an early 200,
        WeCom would not retry and the message would be lost). WeCom retries the 503; once the
        first attempt commits, the retry is a duplicate (``processed_events``) and changes
        nothing. The first attempt's replies, when it finishes, go out through the outbox."""
        if deadline is None:
            deadline = self.reply_deadline(event.platform)
        if self.group_commit:
            task = self.writer().submit_future(event)
        else:
            task = asyncio.ensure_future(run_in_threadpool(self.process, event))
        if not task.done():
            # Wait for the outcome or the deadline, whichever comes first. Unlike wait_for(shield())
            # this makes no task and no extra future per request; a cancelled request (the client
            # went away) leaves the event to finish, as shield would.
            waiter = asyncio.get_running_loop().create_future()

            def wake(_=None) -> None:
                if not waiter.done():
                    waiter.set_result(None)

            timer = asyncio.get_running_loop().call_later(deadline, wake)
            task.add_done_callback(wake)
            try:
                await waiter
            except asyncio.CancelledError:  # the request went away; the event is still stored
                task.add_done_callback(_retrieve)
                raise
            finally:
                timer.cancel()
                task.remove_done_callback(wake)
        if not task.done():
            log.warning("handler for %s missed the %.1fs deadline; replying via outbox", event.dedupe_key, deadline)
            task.add_done_callback(lambda t: self._late_reply(t, event, reply_channel))
            self._count(event.platform, "deadline")
            raise DeadlineMissed(event.dedupe_key)
        if task.exception() is not None:
            self._count(event.platform, "error")
            return task.result()  # raises it
        self._count(event.platform, "stored")
        return task.result()

    def _count(self, platform: str, outcome: str) -> None:
        """``qunzhi_callbacks_total`` (telemetry): one child per (platform, outcome), made once."""
        child = self._callback_counts.get((platform, outcome))
        if child is None:
            from telemetry.metrics import CALLBACKS

            child = self._callback_counts[(platform, outcome)] = CALLBACKS.labels(platform, outcome)
        child.inc()

    def close(self) -> None:
        """Stop the writer after it has finished what it holds."""
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
                # The replies are on their way: a retry of the request from now on answers nothing
                # more (an empty 200), or the user would get them twice. (A retry that lands in the
                # moment between the event's commit and this one still gets the passive reply too.)
                key = stored_key(event, self.services)
                if key:
                    remember_reply(s, key, [])
        except Exception:
            log.exception("could not queue the late replies of %s", event.dedupe_key)


def _retrieve(task: asyncio.Future) -> None:
    """Done callback of an outcome nobody waits for any more: log a failure, once."""
    if not task.cancelled() and task.exception() is not None:
        log.error("event failed after its request went away: %r", task.exception())


class WriterUnavailable(RuntimeError):
    """The configured writer cannot serve this runtime (``Runtime.writer_refusal`` says why)."""


def _in_memory(url: str) -> bool:
    return url.startswith("sqlite") and (":memory:" in url or "mode=memory" in url
                                         or url.rstrip("/") in ("sqlite:", "sqlite+pysqlite:"))
