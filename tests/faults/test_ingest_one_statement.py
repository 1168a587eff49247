"""PostgreSQL's one-statement bulk ingest (``storage.ingest.one_statement``,
``storage.ingest.pg.pg_ingest``): the same end state as the per-event path, exact counters when two
writers insert the same new groups at once, a poisoned batch falling back event by event, and a
lost connection replaced without losing a message."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from sqlalchemy import func, select, text

import storage.ingest.pg as ingest_pg
from governance.events import Event
from storage.models import Group, Membership, Message, ProcessedEvent
from tests.conftest import _truncate
from tests.faults.test_ingest_fast_path import _run_batch, _snapshot


@pytest.fixture
def pg(request):
    db = request.getfixturevalue("_pg_db")  # skips, with the reason, when PostgreSQL is not configured
    _truncate(db)
    return db


@pytest.fixture
def pg_runtime(pg, settings, clock):
    from bot.runtime import Runtime

    return Runtime(settings.model_copy(update={"database_url": pg.url}), db=pg, clock=clock)


@pytest.fixture
def statements(monkeypatch):
    """The (cut, claimed) results of every one-statement run."""
    runs = []
    real = ingest_pg.pg_ingest

    def spy(*args):
        out = real(*args)
        runs.append(out)
        return out

    monkeypatch.setattr(ingest_pg, "pg_ingest", spy)
    return runs


def _msg(clock, i, sender, text, group=None, *, mentioned=False, msg_id=None, platform="bridge"):
    return Event(platform=platform, kind="message", sender_id=sender, at=clock() + timedelta(seconds=i), text=text,
                 group_id=group, msg_id=f"m{i}" if msg_id is None else msg_id, mentioned_bot=mentioned)


def _setup(clock) -> list[Event]:
    """An earlier batch: g1 exists with counts and members, u7 is in a dialogue (报备)."""
    return [_msg(clock, 1, "u1", "今天下午三点开会", "g1"), _msg(clock, 2, "u2", "收到", "g1"),
            _msg(clock, 3, "u7", "报备", platform="aibot")]


def _plain(clock) -> list[Event]:
    """A batch of plain activity only (every event may take the bulk path)."""
    at = lambda s: clock() + timedelta(seconds=s)  # noqa: E731
    return [
        _msg(clock, 10, "u1", "材料已上传", "g1"),                                  # existing group, work
        _msg(clock, 1, "u1", "今天下午三点开会", "g1"),                             # retry of the earlier batch
        _msg(clock, 11, "u3", "👍", "g1"),                                          # new member of g1, ritual
        _msg(clock, 11, "u3", "👍", "g1"),                                          # repeated within the batch
        Event(platform="bridge", kind="member_joined", sender_id="u4", at=at(12), group_id="g2",
              member_ids=("u4", "u5", "u4"), msg_id="j12", group_name="防汛群"),   # new group by a join
        _msg(clock, 13, "u5", "明天上午报送防汛值班表", "g2"),
        _msg(clock, 14, "u6", "好的", "g3", msg_id=""),                              # no dedupe key
        _msg(clock, 15, "u8", "请问今天几点开会", "g1", mentioned=True),               # hint
        _msg(clock, 16, "u7", "防汛值班群", platform="aibot"),                        # u7's dialogue answer: the cut
        _msg(clock, 17, "u1", "收到", "g2"),                                         # after the cut
        _msg(clock, 18, "u9", "材料", "g4", mentioned=True, msg_id="m10"),           # m10's key again
    ]


def test_one_statement_leaves_the_state_of_the_per_event_path(pg, pg_runtime, clock, statements):
    expected_replies = []
    for bulk in (False, True):
        _truncate(pg)
        _run_batch(pg_runtime, _setup(clock), bulk=False)
        replies = _run_batch(pg_runtime, _plain(clock), bulk=bulk)
        retry = _run_batch(pg_runtime, _plain(clock), bulk=bulk)  # WeCom retries all of it
        state = _snapshot(pg)
        if not bulk:
            assert not statements
            expected_replies, expected_retry, expected_state = replies, retry, state
    assert len(statements) == 2 and statements[0][0] == 8, "the statement took the batch up to the dialogue's answer"
    assert replies == expected_replies
    assert retry == expected_retry
    assert state == expected_state
    with pg.session() as s:  # and it is the state meant
        g1, g2 = s.get(Group, "g1"), s.get(Group, "g2")
        assert (g1.message_count, g1.ritual_count, g1.member_count) == (5, 2, 4)
        assert (g2.message_count, g2.member_count, g2.name) == (2, 3, "防汛群")
        assert g1.updated_at == clock() + timedelta(seconds=15) == g1.last_message_at
        assert g1.last_work_at == clock() + timedelta(seconds=15)
        assert s.get(Group, "g4") is None  # its key was m10's: a duplicate


def test_two_writers_inserting_the_same_new_groups_keep_exact_counters(pg, pg_runtime, clock, statements):
    """The statement's snapshot cannot see a group another writer inserted a moment earlier; the
    groups' INSERT … ON CONFLICT DO UPDATE must count this batch's messages on that row anyway."""
    rounds, writers = 25, 2
    barrier = threading.Barrier(writers)
    errors = []

    def writer(w: int) -> None:
        try:
            for r in range(rounds):
                events = [_msg(clock, r, f"w{w}u{j}", "收到" if j % 2 else "材料已上传", f"r{r}g{j % 3}",
                               msg_id=f"w{w}r{r}m{j}") for j in range(6)]
                barrier.wait()
                _run_batch(pg_runtime, events, bulk=True)
        except BaseException as e:  # reported below: a thread's failure must fail the test
            errors.append(e)
            barrier.abort()
        finally:
            pg_runtime.db.drop_ingest_connection()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(statements) == rounds * writers
    with pg.session() as s:
        groups = s.execute(select(Group)).scalars().all()
        assert len(groups) == rounds * 3
        for g in groups:
            msgs = s.execute(select(Message).where(Message.group_id == g.id)).scalars().all()
            members = s.execute(select(func.count()).select_from(Membership)
                                .where(Membership.group_id == g.id)).scalar_one()
            assert g.message_count == len(msgs) == 2 * writers, g.id
            assert g.ritual_count == sum(m.is_ritual for m in msgs), g.id
            assert g.member_count == members == 2 * writers, g.id
            assert g.last_message_at == max(m.sent_at for m in msgs)


def test_a_poisoned_batch_is_stored_event_by_event(pg, pg_runtime, clock, statements):
    """One event the statement cannot store (a group id over its 128 characters) fails the one
    statement, so nothing of it is written; then every event goes alone: the others are stored
    and answered, the bad one fails alone (its request gets 500)."""
    events = [_msg(clock, 1, "u1", "材料已上传", "g1"), _msg(clock, 2, "u2", "收到", "x" * 129),
              _msg(clock, 3, "u3", "请问怎么用", "g1", mentioned=True)]
    outcomes = {}
    from bot.writer import run_batch

    run_batch(pg_runtime, events, lambda items: outcomes.update(items))
    assert sorted(outcomes) == [0, 1, 2]
    assert isinstance(outcomes[1], Exception)
    assert outcomes[0] == [] and outcomes[2] and "帮助" in outcomes[2][0].text
    assert statements == [], "the failed statement returned nothing"
    with pg.session() as s:
        assert s.get(Group, "g1").message_count == 2
        assert s.execute(select(ProcessedEvent.key).order_by(ProcessedEvent.key)).scalars().all() == [
            "bridge:m1", "bridge:m3"]


def test_a_lost_connection_is_replaced_and_nothing_is_lost(pg, pg_runtime, clock, statements):
    _run_batch(pg_runtime, [_msg(clock, 1, "u1", "材料已上传", "g1")], bulk=True)
    conn = pg_runtime.db.ingest_connection()
    with pg.engine.begin() as c:  # the server ends the writer's connection (a restart, a proxy timeout)
        c.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": conn.info.backend_pid})
    _run_batch(pg_runtime, [_msg(clock, 2, "u2", "收到", "g1")], bulk=True)  # fails over to the session path
    assert pg_runtime.db.ingest_connection() is not conn and conn.closed
    _run_batch(pg_runtime, [_msg(clock, 3, "u3", "收到", "g1")], bulk=True)  # the new connection
    assert len(statements) == 2
    with pg.session() as s:
        assert s.get(Group, "g1").message_count == 3
    live = pg_runtime.db.ingest_connection()
    pg_runtime.db.drop_ingest_connection()
    assert live.closed
