"""The writer process (bot/writer.py): events stored by a child process, outcomes back over the
lanes; a killed child fails what it held (nothing acknowledged) and is replaced; a child that
keeps dying leaves ingest to threads. Real child processes, on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from bot.runtime import Runtime, WriterUnavailable
from bot.writer import ProcessWriter, ThreadWriter, WriterDied
from handlers.dispatch import HINT
from governance.events import Event
from storage.models import Group, Message, ProcessedEvent
from tests.conftest import make_settings


def _event(text: str = "明天上午九点在三楼会议室开会", group: str = "g1", sender: str = "u1") -> Event:
    return Event(platform="aibot", kind="message", sender_id=sender, at=datetime.now(timezone.utc), text=text,
                 group_id=group, msg_id=uuid.uuid4().hex, mentioned_bot=True)


@pytest.fixture
def proc_runtime(db):
    """A runtime that owns its database (named by the test database's URL) and the real clock:
    the conditions under which it stores events in a writer process."""
    rt = Runtime(make_settings(database_url=db.url, ingest_writer="process"), migrate=False)
    yield rt
    rt.close()
    rt.db.dispose()


def _count(db, model) -> int:
    with db.session() as s:
        return s.execute(select(func.count()).select_from(model)).scalar_one()


def test_events_are_stored_by_a_child_process_and_answered(proc_runtime, db):
    async def main():
        await proc_runtime.start_writer()
        w = proc_runtime.writer()
        assert isinstance(w, ProcessWriter) and w.proc.pid != os.getpid() and w.proc.is_alive()
        events = [_event(group=f"g{i % 3}", sender=f"u{i}") for i in range(40)] + [_event("收到")]
        return await asyncio.gather(*(proc_runtime.process_async(e) for e in events)), events

    replies, events = asyncio.run(main())
    assert [[r.text for r in rs] for rs in replies] == [[HINT]] * 40 + [[]]
    assert _count(db, Message) == 41 and _count(db, ProcessedEvent) == 41
    with db.session() as s:
        assert sum(g.message_count for g in s.execute(select(Group)).scalars()) == 41


def test_a_killed_writer_fails_what_it_held_and_is_replaced(proc_runtime, db):
    async def main():
        await proc_runtime.start_writer()
        first = proc_runtime.writer()
        assert [r.text for r in await proc_runtime.process_async(_event())] == [HINT]
        events = [_event(group=f"k{i % 5}", sender=f"u{i}") for i in range(300)]
        pending = [proc_runtime.writer().submit_future(e) for e in events]
        await asyncio.sleep(0.01)
        first.proc.kill()  # SIGKILL in the middle of the stream: no goodbye
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        assert all(isinstance(o, list) or isinstance(o, WriterDied) for o in outcomes), outcomes
        answered = {e.dedupe_key for e, o in zip(events, outcomes) if isinstance(o, list)}
        first.proc.join(10)
        for _ in range(100):  # the lane sees end of file on the event loop
            if not first.alive:
                break
            await asyncio.sleep(0.05)
        assert not first.alive
        late = first.lanes[0].submit(_event())
        with pytest.raises(WriterDied):
            await late  # a dead lane takes nothing: the request would answer 500, not 200
        second = proc_runtime.writer()
        assert second is not first and isinstance(second, ProcessWriter)
        return answered, await proc_runtime.process_async(_event(group="g9"))

    answered, replies = asyncio.run(main())
    assert [r.text for r in replies] == [HINT]
    with db.session() as s:
        stored = set(s.execute(select(Message.dedupe_key)).scalars())
        assert answered <= stored  # every event answered before the kill was committed first
        assert s.get(Group, "g9").message_count == 1


def test_a_writer_that_keeps_dying_leaves_ingest_to_threads(proc_runtime, db):
    async def main():
        for _ in range(2):
            await proc_runtime.start_writer()
            w = proc_runtime.writer()
            os.kill(w.proc.pid, signal.SIGKILL)
            w.proc.join(10)
            for _ in range(100):
                if not w.alive:
                    break
                await asyncio.sleep(0.05)
        return await proc_runtime.process_async(_event(group="g7"))

    assert [r.text for r in asyncio.run(main())] == [HINT]
    assert isinstance(proc_runtime.writer(), ThreadWriter) and proc_runtime.writer_kind == "thread"
    with db.session() as s:
        assert s.get(Group, "g7").message_count == 1


def test_the_writer_is_the_one_configured(db, runtime, clock):
    """QUNZHI_INGEST_WRITER decides; a writer process cannot serve an injected clock or database
    nor an in-memory database, and a runtime asked for one with them refuses to start it."""
    assert runtime.writer_kind == "thread" and isinstance(runtime.writer(), ThreadWriter)  # configured so
    runtime.close()
    refused = [Runtime(make_settings(database_url=db.url, ingest_writer="process"), clock=clock, migrate=False),
               Runtime(make_settings(database_url=db.url, ingest_writer="process"), db=db),
               Runtime(make_settings(database_url="sqlite://", ingest_writer="process"))]
    try:
        for rt in refused:
            assert rt.writer_kind == "process" and rt.writer_refusal
            with pytest.raises(WriterUnavailable, match="QUNZHI_INGEST_WRITER=thread"):
                rt.writer()
            with pytest.raises(WriterUnavailable):
                asyncio.run(rt.start_writer())  # the web app's startup fails, saying why
    finally:
        for rt in refused[::2]:
            rt.db.dispose()


def test_an_event_that_cannot_be_pickled_fails_alone(proc_runtime, db):
    import threading

    from bot.writer import WriterError

    async def main():
        await proc_runtime.start_writer()
        bad = _event(group="gb")
        bad.data["lock"] = threading.Lock()  # cannot cross to the child
        good = [_event(group="gb", sender=f"u{i}") for i in range(5)]
        out = await asyncio.gather(*(proc_runtime.process_async(e) for e in [bad] + good), return_exceptions=True)
        later = await proc_runtime.process_async(_event(group="gb"))  # the lane still works
        return out, later

    out, later = asyncio.run(main())
    assert isinstance(out[0], WriterError)
    assert [[r.text for r in o] for o in out[1:]] == [[HINT]] * 5 and [r.text for r in later] == [HINT]
    with db.session() as s:
        assert s.get(Group, "gb").message_count == 6


def test_a_process_that_never_closes_its_runtime_still_exits(db, tmp_path):
    """Interpreter exit joins the writer child without a timeout; the lanes are closed first, so
    the child sees end of file and the web process exits instead of hanging."""
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "no_close.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from tests.faults.test_writer_process import _event
        from tests.conftest import make_settings
        from bot.runtime import Runtime, WriterUnavailable

        if __name__ == "__main__":
            rt = Runtime(make_settings(database_url={db.url!r}, ingest_writer="process"), migrate=False)
            async def main():
                await rt.start_writer()
                assert rt.writer().kind == "process"
                print(len(await rt.process_async(_event(group="gx"))))
            asyncio.run(main())
    """))
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "1"
    with db.session() as s:
        assert s.get(Group, "gx").message_count == 1

