"""One definition of a group's counters (``storage.ingest.counters``): the batch paths, the
per-event path and the importer's recount agree on them."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from governance.events import Event
from storage import ingest
from storage.ingest.counters import COUNTERS, recount
from storage.models import Group
from tests.conftest import _truncate

COLUMNS = [c.column for c in COUNTERS] + ["member_count"]


def _events(clock) -> list[Event]:
    t0 = clock()
    texts = ["材料已上传", "收到", "今天下午三点开会", "👍", "好的"]
    out = []
    for i in range(12):
        # out of order in time: a late-delivered older message must not move ``last_*_at`` back
        at = t0 + timedelta(minutes=(i * 7) % 11)
        out.append(Event(platform="aibot", kind="message", sender_id=f"u{i % 4}", at=at, text=texts[i % 5],
                         group_id=f"g{i % 3}", msg_id=f"c{i}"))
    out.append(Event(platform="aibot", kind="member_joined", sender_id="u9", at=t0, group_id="g0",
                     member_ids=("u8", "u9"), msg_id="j1"))
    return out


def _counters(db) -> dict:
    with db.session() as s:
        return {g.id: {c: getattr(g, c) for c in COLUMNS} for g in s.execute(select(Group)).scalars()}


def test_batch_per_event_and_recount_agree(db, clock):
    events = _events(clock)
    stored = ingest.store(db, [ingest.Item(e, e.dedupe_key) for e in events], store_text=False)
    assert stored.outcomes == [ingest.NEW] * len(events)
    batch = _counters(db)
    assert batch["g0"]["message_count"] == 4 and batch["g0"]["member_count"] == 6

    with db.session() as s:
        for g in s.execute(select(Group)).scalars():
            g.message_count, g.ritual_count, g.last_message_at, g.last_work_at = 99, 99, None, None
        s.flush()
        recount(s, ["g0", "g1", "g2"])
    assert _counters(db) == batch

    _truncate(db)
    for e in events:  # the same events one at a time, as the handlers' per-event path stores them
        with db.session() as s:
            ingest.record(s, e, store_text=False)
    assert _counters(db) == batch
