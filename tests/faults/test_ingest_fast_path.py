"""The bulk ingest path of the group-commit writer (``storage.ingest.store``) leaves the
database exactly as the per-event path (``handle_event`` per event) does, on SQLite and
PostgreSQL; an anonymous command is not in its author's transaction; a statement failing in the
bulk path falls back to the per-event path; a missed deadline answers 503 and WeCom's retry is
stored once."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from bot.writer import run_batch
from governance.events import Event
from storage.models import Base, Conversation, Group, Membership, Message, OutboxMessage, ProcessedEvent
from tests.bot.helpers import WeComSim, count
from tests.conftest import _truncate

IGNORED_COLUMNS = {"id"}  # autoincrement ids differ with insertion order, nothing else may
RANDOM_COLUMNS = {"salt", "voter_key"}  # random per anonymous window: compared as present, not by value


def _events(clock) -> list[Event]:
    t0 = clock()
    at = lambda s: t0 + timedelta(seconds=s)  # noqa: E731

    def msg(i, sender, text, group=None, mentioned=False, msg_id=None, platform="aibot"):
        return Event(platform=platform, kind="message", sender_id=sender, at=at(i), text=text, group_id=group,
                     msg_id=msg_id if msg_id is not None else f"m{i}", mentioned_bot=mentioned)

    return [
        msg(1, "u1", "请问怎么用", "g1", mentioned=True),                    # new group, person; work; hint
        msg(2, "u2", "今天下午三点开会，请各村准时参加", "g1", platform="wecom"),  # work, not to the bot
        msg(1, "u1", "请问怎么用", "g1", mentioned=True),                    # WeCom retry: duplicate
        Event(platform="bridge", kind="member_joined", sender_id="u3", at=at(3), group_id="g2",
              member_ids=("u3", "u4", "u3"), msg_id="j3", group_name="防汛群"),
        Event(platform="bridge", kind="group_created", sender_id="u5", at=at(4), group_id="g3",
              member_ids=("u5", "u6"), msg_id="c4", group_name="新建群"),
        msg(5, "u1", "我的群"),                                               # a normal command (direct)
        msg(6, "u2", "这个群没用", "g1", mentioned=True),                      # anonymous command
        msg(7, "u7", "报备"),                                                 # starts a dialogue
        msg(8, "u7", "防汛值班群"),                                           # the dialogue's next answer
        msg(9, "u1", "好的", "g1", mentioned=True),                           # ritual ack: no hint
        Event(platform="bridge", kind="member_left", sender_id="u4", at=at(10), group_id="g2", msg_id="l10"),
        msg(11, "u4", "材料已上传", "g2", platform="bridge"),                  # back in the group by speaking
        msg(12, "u8", "👍", "g3", platform="bridge", msg_id=""),               # no dedupe key
        Event(platform="aibot", kind="enter_chat", sender_id="u9", at=at(13), msg_id="e13"),
        msg(14, "u3", "明天上午报送防汛值班表", "g2", platform="bridge"),
        msg(15, "u10", "", "g1", mentioned=True),                             # empty text to the bot: no reply
        msg(16, "u11", "收到", "g4", mentioned=True, msg_id="m1"),             # same key as m1 in another group
    ]


def _snapshot(db) -> dict:
    out = {}
    with db.session() as s:
        for table in Base.metadata.sorted_tables:
            cols = [c for c in table.c if c.name not in IGNORED_COLUMNS]
            rows = s.execute(select(*cols)).all()
            out[table.name] = sorted(tuple("<random>" if c.name in RANDOM_COLUMNS or str(v).startswith("anon:")
                                           else repr(v) for c, v in zip(cols, r)) for r in rows)
    return out


def _run_batch(runtime, events, *, bulk: bool):
    runtime.bulk = bulk
    outcomes: dict[int, object] = {}

    def deliver(items):
        for i, outcome in items:
            assert i not in outcomes, f"event {i} delivered twice"
            outcomes[i] = outcome

    run_batch(runtime, events, deliver)  # the batch logic without the threads
    assert sorted(outcomes) == list(range(len(events)))
    for o in outcomes.values():
        if isinstance(o, BaseException):
            raise o
    return [outcomes[i] for i in range(len(events))]


def test_bulk_path_leaves_the_same_state_as_the_per_event_path(runtime, db, clock, monkeypatch):
    events = _events(clock)
    calls = []
    import bot.writer as rt_mod

    real = rt_mod.store_plain
    monkeypatch.setattr(rt_mod, "store_plain", lambda target, plans, services: calls.append(len(plans)) or real(
        target, plans, services))

    per_event = _run_batch(runtime, events, bulk=False)
    per_event_retry = _run_batch(runtime, events, bulk=False)  # WeCom retries everything
    expected = _snapshot(db)
    assert not calls
    _truncate(db)

    bulk = _run_batch(runtime, events, bulk=True)
    assert sum(calls) > len(events) // 2, "most of the batch went through the bulk path"
    bulk_retry = _run_batch(runtime, events, bulk=True)
    got = _snapshot(db)

    assert bulk == per_event
    # a retry stores nothing and is answered as the first attempt was
    assert bulk_retry == per_event_retry == per_event
    assert got == expected
    # and the state is the one handle_event is meant to leave
    with db.session() as s:
        # m1, m2, m9, m15 (the anonymous command leaves no activity); m9 and the empty m15 are ritual
        assert s.get(Group, "g1").message_count == 4
        assert s.get(Group, "g1").ritual_count == 2
        assert s.get(Group, "g2").member_count == 2 and s.get(Group, "g2").name == "防汛群"
        assert sorted(s.execute(select(Membership.person_id).where(Membership.group_id == "g2")).scalars()) == [
            "u3", "u4"]
        assert s.get(Conversation, "u7") is not None  # the dialogue went on with its answer
        assert s.execute(select(Message.sender_id).where(Message.group_id == "g1")).scalars().all().count("u2") == 1
        assert s.get(Group, "g4") is None  # its key was m1's: a duplicate


def test_anonymous_command_gets_its_own_transaction(runtime, db, clock):
    """Rows written in one transaction share ``xmin`` on PostgreSQL: an anonymous vote must not
    share it with its author's message (nor anyone's) of the same batch."""
    t0 = clock()
    events = [Event(platform="aibot", kind="message", sender_id="u2", at=t0, text="收到", group_id="g1",
                    msg_id="a1", mentioned_bot=True),
              Event(platform="aibot", kind="message", sender_id="u2", at=t0 + timedelta(seconds=1), text="这个群没用",
                    group_id="g1", msg_id="a2", mentioned_bot=True),
              Event(platform="aibot", kind="message", sender_id="u3", at=t0 + timedelta(seconds=2), text="好的",
                    group_id="g1", msg_id="a3", mentioned_bot=True)]
    _run_batch(runtime, events, bulk=True)
    with db.session() as s:
        assert s.execute(select(Message.dedupe_key).order_by(Message.dedupe_key)).scalars().all() == [
            "aibot:a1", "aibot:a3"]
        assert count(db, ProcessedEvent) == 3
        if db.dialect == "postgresql":
            msg_xmin = set(s.execute(text("SELECT xmin::text FROM messages")).scalars())
            vote_xmin = set(s.execute(text("SELECT xmin::text FROM useless_votes")).scalars())
            assert len(vote_xmin) == 1 and not (vote_xmin & msg_xmin)


def test_a_failing_bulk_statement_falls_back_to_the_per_event_path(runtime, db, clock, monkeypatch):
    import storage.ingest.pg
    import storage.ingest.session

    def broken(*a, **kw):
        raise RuntimeError("simulated failure of a multi-row statement")

    monkeypatch.setattr(storage.ingest.session, "store", broken)  # the batch in a session
    monkeypatch.setattr(storage.ingest.pg, "pg_ingest", broken)  # PostgreSQL's one-statement path
    events = _events(clock)[:5]
    replies = _run_batch(runtime, events, bulk=True)
    assert replies[0] and replies[2] == replies[0]  # the retry within the batch: the same answer
    with db.session() as s:
        assert s.get(Group, "g1").message_count == 2
        assert s.get(Group, "g2").member_count == 2
    assert count(db, ProcessedEvent) == 4


def test_missed_deadline_answers_503_and_the_retry_is_stored_once(client, clock, db, monkeypatch):
    """The first attempt is not committed within the deadline: 503, nothing acknowledged. WeCom
    retries (new nonce, same MsgId) after it committed: the retry is a duplicate, the message is
    stored once, and the slow attempt's reply went to the outbox, stamped by the runtime's clock."""
    runtime = client.app.state.runtime
    import handlers.ingest

    slow_once = {"left": 1}

    def slowed(real):
        def slow(*args):
            if slow_once["left"]:
                slow_once["left"] -= 1
                time.sleep(0.4)
            return real(*args)
        return slow

    # the bulk step, whichever strategy storage takes
    monkeypatch.setattr("bot.writer.store_plain", slowed(handlers.ingest.store_plain))
    original = runtime.process_async

    async def short_deadline(event, **kw):
        return await original(event, deadline=0.1, **kw)

    monkeypatch.setattr(runtime, "process_async", short_deadline)
    sim = WeComSim(client, clock)
    r = sim.say("wangwu", "明天几点开会", "700001")
    assert r.status_code == 503
    for _ in range(60):
        if count(db, OutboxMessage):
            break
        time.sleep(0.05)
    assert count(db, ProcessedEvent) == 1
    r2 = sim.say("wangwu", "明天几点开会", "700001")  # WeCom's retry
    assert (r2.status_code, r2.text) == (200, "")  # the reply went to the outbox: not a second time
    assert count(db, ProcessedEvent) == 1
    with db.session() as s:
        rows = s.execute(select(OutboxMessage)).scalars().all()
        assert len(rows) == 1 and rows[0].created_at == clock()
        assert rows[0].payload["text"]  # the hint, answered late


@pytest.mark.parametrize("store_text", [True, False])
def test_bulk_path_stores_text_only_when_configured(runtime, db, clock, store_text, monkeypatch):
    monkeypatch.setattr(runtime.services.settings, "store_message_text", store_text)
    ev = Event(platform="bridge", kind="message", sender_id="u1", at=clock(), text="材料已上传", group_id="g1",
               msg_id="t1")
    _run_batch(runtime, [ev], bulk=True)
    with db.session() as s:
        assert s.execute(select(Message.text)).scalar_one() == ("材料已上传" if store_text else None)
