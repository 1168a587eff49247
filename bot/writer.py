"""The group-commit writers behind ``Runtime.process_async`` (see ``bot.runtime`` for the why).

``run_batch`` is the batch logic both writers share: plan every event (pure), store the batch
(plain activity through ``storage.ingest.store``, which picks the strategy; anything else in
one transaction with a SAVEPOINT per event), commit, and only then hand each event's
outcome (its replies, or the exception it raised) to ``deliver``. Events that must be alone
(anonymous ones, and those that failed inside the batch) are handled after the commit, each in
its own transaction, and delivered as they finish.

Two transports run it:

* ``ThreadWriter`` (``QUNZHI_INGEST_WRITER=thread``): writer threads in the web process. Simple,
  and what a runtime given its clock or database, or an in-memory database, needs; but the
  writer's Python (SQLAlchemy, the driver) and the event loop's (HTTP, crypto) then share one
  interpreter lock.
* ``ProcessWriter`` (``QUNZHI_INGEST_WRITER=process``, the default): one child process
  (``multiprocessing`` spawn) with its own interpreter and database connections, fed over Unix socket pairs, one *lane* per writer shard. The web
  process only pickles the events of a batch and unpickles the outcomes; the event loop reads
  the outcomes itself (no thread hand-off per request). A lane has at most ``QUNZHI_WRITER_PIPELINE`` batches
  in flight: what arrives meanwhile becomes the next batch, so the batch size follows the load.

Failure of the child (killed, crashed): every event in flight or queued on it fails with
``WriterDied`` (the request answers 500, nothing was acknowledged, the platform retries and the
dedupe absorbs what had in fact been committed); the runtime starts a new child for the next
event. If children keep dying (twice within ``RESTART_WINDOW`` seconds) the runtime falls back
to the thread writer and logs an error, so ingest goes on.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import multiprocessing.util
import pickle
import queue
import signal
import socket
import struct
import threading
import time
import zlib
from typing import Callable, Union

from config.settings import Settings
from governance.events import Event, Reply
from handlers.context import Services, utcnow
from handlers.dispatch import Planned, handle_event, plan
from platforms.capabilities import table as capability_table
from handlers.ingest import store_plain
from storage import ingest
from storage.db import Database

log = logging.getLogger("qunzhi.writer")

BULK_MAX = ingest.BATCH_MAX  # events per bulk run (storage.ingest.store)
READY_TIMEOUT = 60.0  # seconds for a new writer process to import, connect and say ready
RESTART_WINDOW = 10.0  # two writer-process deaths within this many seconds: fall back to threads

Outcome = Union[list[Reply], BaseException]
Deliver = Callable[[list[tuple[int, Outcome]]], None]


class WriterDied(RuntimeError):
    """The writer process ended before this event's outcome came back (it may or may not be stored)."""


class WriterError(RuntimeError):
    """An event failed in the writer process (the original exception, as text: not all pickle)."""


def shard_of(event: Event, n: int) -> int:
    """A group's events always go to the same shard, so two shards' open batches never wait on
    (or deadlock over) the same group row."""
    return zlib.crc32((event.group_id or event.sender_id or "").encode()) % n


# --- the batch logic ------------------------------------------------------------------------
class Handling:
    """What a writer stores events with: the database, the handlers' services, the bulk switch
    and the batch size. The web process's ``bot.runtime.Runtime`` is one; a writer process
    builds its own (``_child_main``)."""

    def __init__(self, settings: Settings, db: Database, services: Services, *, bulk: bool, group_commit_max: int):
        self.settings = settings
        self.db = db
        self.services = services
        self.bulk = bulk  # QUNZHI_BULK_INGEST=0: every event of a batch through handle_event
        self.group_commit_max = group_commit_max

    def process(self, event: Event) -> list[Reply]:
        """Handle one event in its own transaction (blocking)."""
        with self.db.session() as s:
            return handle_event(s, event, self.services)


def run_batch(rt: Handling, events: list[Event], deliver: Deliver) -> None:
    """Store ``events`` with group commit; ``deliver`` gets ``(index, outcome)`` pairs, the
    committed ones only after the commit. Every index is delivered exactly once."""
    started = time.perf_counter()
    try:
        _run_batch(rt, events, deliver)
    finally:
        from telemetry.metrics import WRITER_BATCH, WRITER_SECONDS

        WRITER_BATCH.observe(len(events))
        WRITER_SECONDS.observe(time.perf_counter() - started)


def _run_batch(rt: Handling, events: list[Event], deliver: Deliver) -> None:
    plans: list[tuple[int, Planned]] = []
    alone: list[int] = []
    for i, event in enumerate(events):  # the pure work first: no database, no lock held
        try:
            p = plan(event, rt.services)
        except Exception as e:
            log.warning("could not plan event %s (%r); handling it alone", event.dedupe_key, e)
            alone.append(i)
            continue
        # An anonymous event shares no transaction with anyone's other events: on PostgreSQL
        # rows written in one transaction share xmin, which would link the answer to its author.
        (alone.append(i) if p.anonymous else plans.append((i, p)))
    done: list[tuple[int, Outcome]] = []
    retry: list[int] = []
    failed: list[int] = []
    if rt.bulk and plans and len(plans) <= BULK_MAX and all(p.bulk for _, p in plans):
        try:  # the usual case: the whole batch is plain activity, stored as storage sees fit
            taken = store_plain(rt.db, [p for _, p in plans], rt.services)  # committed when it returns
        except Exception as e:  # nothing of it was written
            log.warning("bulk ingest of %d events failed (%r); processing them one by one", len(plans), e)
            failed, plans = [i for i, _ in plans], []
        else:
            if taken:
                deliver([(i, r) for (i, _), r in zip(plans, taken)])  # committed
                plans = plans[len(taken):]  # from a dialogue's next answer on: the path below
    if plans:
        try:
            with ingest.transaction(rt.db) as s:
                a = 0
                while a < len(plans):
                    b = a
                    while b < len(plans) and plans[b][1].bulk and b - a < BULK_MAX:
                        b += 1
                    if rt.bulk and b > a:
                        k = _bulk(rt, s, plans[a:b], done, retry)
                        if k:
                            a += k
                            continue
                    _one(rt, s, *plans[a], done, retry)
                    a += 1
        except Exception as e:
            log.warning("batch of %d events failed to commit (%r); processing them one by one", len(plans), e)
            retry, done = [i for i, _ in plans], []
    if done:  # committed: now the requests may be answered
        deliver(done)
    for i in failed + retry + alone:
        try:
            outcome: Outcome = rt.process(events[i])
        except Exception as e:
            log.error("event %s failed: %r", events[i].dedupe_key, e)
            outcome = e
        deliver([(i, outcome)])


def _one(rt: Handling, s, i: int, p: Planned, done: list, retry: list) -> None:
    """The per-event path: ``handle_event`` inside its own SAVEPOINT."""
    try:
        with s.begin_nested():
            replies = handle_event(s, p.event, rt.services, p.classified)
    except Exception as e:  # rolled back to the savepoint: only this event is lost
        log.warning("event %s failed inside a batch (%r); retrying it alone", p.event.dedupe_key, e)
        retry.append(i)
        return
    done.append((i, replies))


def _bulk(rt: Handling, s, segment: list[tuple[int, Planned]], done: list, retry: list) -> int:
    """A run of plain-activity events in a few multi-row statements, inside a SAVEPOINT: as many
    as ``store_plain`` takes (returned). If any statement fails, the run is rolled back to its
    SAVEPOINT and all its events go the per-event path one by one."""
    try:
        with s.begin_nested():
            results = store_plain(s, [p for _, p in segment], rt.services)
    except Exception as e:
        log.warning("bulk ingest of %d events failed (%r); handling them one by one", len(segment), e)
        s.expire_all()
        for i, p in segment:
            _one(rt, s, i, p, done, retry)
        return len(segment)
    done.extend((i, replies) for (i, _), replies in zip(segment, results))
    return len(results)


# --- writer threads in this process --------------------------------------------------------
_STOP = object()


class ThreadWriter:
    """Writer threads draining one queue per shard; ``submit`` returns a concurrent future."""

    kind = "thread"

    def __init__(self, runtime: Handling, shards: int):
        self.rt = runtime
        self.queues: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(max(1, shards))]
        self.threads = [threading.Thread(target=self._run, args=(q,), name=f"qunzhi-group-commit-{i}", daemon=True)
                        for i, q in enumerate(self.queues)]
        self.alive = True
        for t in self.threads:
            t.start()

    def submit(self, event: Event) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self.queues[shard_of(event, len(self.queues))].put((event, fut))
        return fut

    def submit_future(self, event: Event) -> asyncio.Future:
        """An asyncio future of the event's replies (call on the event loop)."""
        return asyncio.wrap_future(self.submit(event))

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
                futures = [f for _, f in batch]
                try:
                    run_batch(self.rt, [e for e, _ in batch], lambda items: _settle(futures, items))
                except BaseException as e:  # never let the writer die with requests waiting
                    log.exception("group commit writer failed")
                    for f in futures:
                        if not f.done():
                            f.set_exception(e)
            if stop:
                break
        self.alive = False
        self.rt.db.drop_ingest_connection()


def _settle(futures, items: list[tuple[int, Outcome]]) -> None:
    for i, outcome in items:
        f = futures[i]
        if f.done():
            continue
        if isinstance(outcome, BaseException):
            f.set_exception(outcome)
        else:
            f.set_result(outcome)


# --- a writer process -----------------------------------------------------------------------
_HEADER = struct.Struct("!I")


def _send_frame(sock: socket.socket, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _recv_frame(sock: socket.socket):
    header = _recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    data = _recv_exact(sock, _HEADER.unpack(header)[0])
    if data is None:
        return None
    return pickle.loads(data)


def _portable(outcome: Outcome) -> Outcome:
    """Exceptions cross the socket as ``WriterError`` text (a driver's exception may not pickle)."""
    if isinstance(outcome, BaseException):
        return WriterError(f"{type(outcome).__name__}: {outcome}")
    return outcome


def _child_main(settings, socks: list[socket.socket], group_commit_max: int, bulk: bool) -> None:
    """The writer process: one thread per lane, each receiving batches and sending outcomes."""
    # The web process decides when we stop (it closes the sockets); a Ctrl-C or a SIGTERM sent
    # to the whole process group must not kill us in the middle of a batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [writer] %(name)s: %(message)s")
    # No pre-ping: it costs a round trip per batch; a connection that went stale fails its batch,
    # SQLAlchemy invalidates it, and the batch's events are retried one by one on fresh ones.
    engine_kwargs = {} if settings.database_url.startswith("sqlite") else {"pool_pre_ping": False}
    db = Database(settings.database_url, migrate=False, **engine_kwargs)
    rt = Handling(settings, db, Services(settings=settings, capabilities=capability_table(settings), clock=utcnow), bulk=bulk, group_commit_max=group_commit_max)
    import nlu

    # events are classified here: the parser's grammar now, its dictionary in the background (a
    # replacement writer starts inside a request's deadline; only commands need the dictionary)
    nlu.warm_up(background=True)
    freeze_startup_objects()  # as in the web process: collections then skip what startup built
    threads = [threading.Thread(target=_serve_lane, args=(rt, sock), name=f"qunzhi-writer-lane-{i}")
               for i, sock in enumerate(socks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rt.db.dispose()


def _serve_lane(rt: Handling, sock: socket.socket) -> None:
    try:
        _send_frame(sock, "ready")
        while True:
            frame = _recv_frame(sock)
            if frame is None:  # the web process closed the lane (or died): stop
                return
            bid, events = frame
            run_batch(rt, events, lambda items: _send_frame(sock, (bid, [(i, _portable(o)) for i, o in items])))
    except (BrokenPipeError, ConnectionResetError):
        log.warning("the web process went away; writer lane stops")
    finally:
        sock.close()
        rt.db.drop_ingest_connection()


def _pickle_batch(bid: int, batch: list[tuple[Event, asyncio.Future]]):
    """The frame of a batch; an event that cannot be pickled fails alone (its request gets 500)."""
    try:
        return pickle.dumps((bid, [e for e, _ in batch]), protocol=pickle.HIGHEST_PROTOCOL), batch
    except Exception:
        good = []
        for e, f in batch:
            try:
                pickle.dumps(e, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as err:
                log.error("event %s cannot be sent to the writer process: %r", e.dedupe_key, err)
                if not f.done():
                    f.set_exception(WriterError(f"event cannot be sent to the writer process: {err!r}"))
                continue
            good.append((e, f))
        if not good:
            return b"", []
        return pickle.dumps((bid, [e for e, _ in good]), protocol=pickle.HIGHEST_PROTOCOL), good


class _Lane:
    """The web-process end of one lane (all on the event loop).

    Events submitted during one turn of the event loop are sent together, at the end of the turn
    (``call_soon``), so one callback does not go alone while its neighbours wait for it. Up to
    ``QUNZHI_WRITER_PIPELINE`` batches are in flight, so the child has the next one at hand when it commits."""

    def __init__(self, writer: "ProcessWriter", sock: socket.socket):
        self.writer = writer
        self.sock = sock
        self.pending: list[tuple[Event, asyncio.Future]] = []
        self.batches: dict[int, dict[int, asyncio.Future]] = {}
        self.next_batch = 0
        self.flush_scheduled = False
        self.ready: asyncio.Future | None = None
        self.reader: asyncio.StreamReader | None = None
        self.stream: asyncio.StreamWriter | None = None
        self.task: asyncio.Task | None = None
        self.dead: BaseException | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        self.reader, self.stream = await asyncio.open_unix_connection(sock=self.sock)
        self.task = loop.create_task(self._read_loop())

    def submit(self, event: Event) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if self.dead is not None:
            fut.set_exception(WriterDied(str(self.dead)))
            return fut
        self.pending.append((event, fut))
        self._schedule_flush(loop)
        return fut

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self.flush_scheduled and len(self.batches) < self.writer.pipeline:
            self.flush_scheduled = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        while self.pending and len(self.batches) < self.writer.pipeline and self.dead is None:
            batch = self.pending[:self.writer.group_commit_max]
            del self.pending[:len(batch)]
            bid, self.next_batch = self.next_batch, self.next_batch + 1
            data, batch = _pickle_batch(bid, batch)
            if not batch:
                continue
            self.batches[bid] = {i: f for i, (_, f) in enumerate(batch)}
            try:
                self.stream.write(_HEADER.pack(len(data)) + data)
            except Exception as e:  # the transport is gone: the child cannot get this batch
                self._fail(e)
                return

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                header = await self.reader.readexactly(_HEADER.size)
                msg = pickle.loads(await self.reader.readexactly(_HEADER.unpack(header)[0]))
                if msg == "ready":
                    if not self.ready.done():
                        self.ready.set_result(True)
                    continue
                bid, items = msg
                futures = self.batches.get(bid, {})
                for i, outcome in items:
                    f = futures.pop(i, None)
                    if f is None or f.done():
                        continue
                    if isinstance(outcome, BaseException):
                        f.set_exception(outcome)
                    else:
                        f.set_result(outcome)
                if not futures:
                    self.batches.pop(bid, None)
                if self.pending:
                    self._schedule_flush(loop)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
            self._fail(e)
        except asyncio.CancelledError:  # the event loop is shutting down: not the child's death
            self._fail(WriterDied("lane closed"), died=False)
            raise
        except Exception as e:  # a garbled frame: the lane cannot be trusted any more
            log.exception("writer lane failed")
            self._fail(e)

    def _fail(self, cause: BaseException, *, died: bool = True) -> None:
        if self.dead is not None:
            return
        self.dead = cause
        self.close()
        waiting = [f for b in self.batches.values() for f in b.values()] + [f for _, f in self.pending]
        self.batches, self.pending = {}, []
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(WriterDied(f"writer process did not start: {cause!r}"))
        for f in waiting:
            if not f.done():
                f.set_exception(WriterDied(f"writer process ended ({cause!r})"))
        if waiting:
            log.error("writer process ended with %d event(s) unanswered (%r); they get 500 and are retried",
                      len(waiting), cause)
        self.writer._lane_died(died)

    def close(self) -> None:
        try:
            if self.stream is not None:
                self.stream.close()
            else:
                self.sock.close()
        except RuntimeError:  # its event loop is closed: close the socket itself
            self.sock.close()


def _shutdown_sockets(socks: list[socket.socket]) -> None:
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed
            continue


class ProcessWriter:
    """The web-process side of a writer process (see the module docstring)."""

    kind = "process"

    def __init__(self, runtime: Handling, shards: int):
        self.group_commit_max = runtime.group_commit_max
        self.pipeline = runtime.settings.writer_pipeline  # batches in flight per lane
        pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(max(1, shards))]
        ctx = multiprocessing.get_context("spawn")
        self.proc = ctx.Process(target=_child_main, name="qunzhi-writer",
                                args=(runtime.settings, [c for _, c in pairs], runtime.group_commit_max, runtime.bulk),
                                daemon=True)
        self.proc.start()
        for _, c in pairs:
            c.close()
        self.lanes = [_Lane(self, p) for p, _ in pairs]
        # At interpreter exit multiprocessing joins its children, without a timeout. The child
        # stops when its lanes close (it ignores SIGTERM), so close them first, whatever path
        # the exit takes (finalizers with an exit priority run before that join).
        multiprocessing.util.Finalize(self, _shutdown_sockets, args=([p for p, _ in pairs],), exitpriority=10)
        self._opened: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.died_at: float | None = None
        self.alive = True

    async def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Connect the lanes to this event loop and wait until the child says ready. If it does
        not (in time), the writer counts as dead: the child is killed and the next event gets a
        new one (or, after repeated deaths, threads)."""
        loop = asyncio.get_running_loop()
        if self._opened is None:
            self._loop = loop
            self._opened = loop.create_task(self._open())
        elif self._loop is not loop:
            raise RuntimeError("a writer process serves one event loop")
        try:
            await asyncio.wait_for(asyncio.shield(self._opened), timeout)
        except BaseException as e:
            if not isinstance(e, asyncio.CancelledError) or self._opened.done():
                log.error("the writer process did not become ready: %r", e)
                for lane in self.lanes:
                    lane._fail(WriterDied(f"writer process did not start: {e!r}"))
                self._lane_died(True)
                self.proc.kill()
            raise

    async def _open(self) -> None:
        for lane in self.lanes:
            await lane.open()
        await asyncio.gather(*(lane.ready for lane in self.lanes))

    def submit_future(self, event: Event) -> asyncio.Future:
        """An asyncio future of the event's replies (call on the event loop)."""
        opened = self._opened
        if opened is not None and opened.done() and not opened.cancelled() and opened.exception() is None:
            return self.lanes[shard_of(event, len(self.lanes))].submit(event)
        return asyncio.ensure_future(self._submit_when_started(event))

    async def _submit_when_started(self, event: Event) -> list[Reply]:
        await self.start()
        return await self.lanes[shard_of(event, len(self.lanes))].submit(event)

    def _lane_died(self, died: bool = True) -> None:
        """One lane is gone, so the child is gone (or going): close the other lanes too. ``died``:
        it ended on its own (counts towards the fall-back), not by our shutting down."""
        if self.alive:
            self.alive = False
            if died:
                self.died_at = time.monotonic()
            for lane in self.lanes:
                if lane.dead is None:
                    lane.close()

    def stop(self, timeout: float = 30.0) -> None:
        """Close the lanes (the child finishes its batches, sees end of file and exits), then wait."""
        self.alive = False
        for lane in self.lanes:
            try:
                lane.sock.shutdown(socket.SHUT_WR)
            except OSError:  # already closed: the child is gone
                log.debug("lane already closed")
        self.proc.join(timeout)
        if self.proc.is_alive():
            log.error("writer process did not stop within %.0fs; killing it", timeout)
            self.proc.kill()
            self.proc.join(5)
        if self._loop is None or self._loop.is_closed():  # else the read loops see EOF and close them
            for lane in self.lanes:
                lane.sock.close()

    def reap(self) -> None:
        """Make sure a writer that is out of service has no child left (and no zombie): its lanes
        are closed, so whatever it still holds can no longer be answered."""
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(1)


def freeze_startup_objects() -> None:
    """Move everything built at startup (modules, the app, SQLAlchemy's metadata) out of the
    cyclic garbage collector's reach: full collections then scan only what requests allocate,
    instead of pausing the event loop to walk the whole program again and again."""
    import gc

    gc.collect()
    gc.freeze()
