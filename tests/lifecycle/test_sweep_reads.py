"""An applied sweep reads every membership once: the scan, the plan, the steps and the closing
refresh share one load of the facts (issue 12). Counted with SQLite's statement trace, which sees
the driver-level cursor the membership stream uses."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event

from scheduler.lifecycle import sweep
from storage.lifecycle import compute_findings, mark_warning_sent
from storage.models import FindingRecord, Group
from tests.lifecycle.helpers import NOW, group, seed_people

FULL_READ = "SELECT group_id, person_id FROM memberships ORDER BY group_id"


def _traced(db) -> list[str]:
    seen: list[str] = []
    db.engine.dispose()  # new connections only: each gets the trace

    @event.listens_for(db.engine, "connect")
    def _trace(dbapi_conn, _record):
        dbapi_conn.set_trace_callback(seen.append)

    return seen


def test_an_applied_sweep_streams_the_memberships_once(sqlite_db, settings):
    db = sqlite_db
    with db.session() as s:
        seed_people(s)
        group(s, "g1", "防汛抗旱群", platform="ledger", source="ledger")  # idle: warned, then an order
        group(s, "g2", "党建工作群", idle_days=1, members=("owner1", "m1", "m2", "m3", "m4"))  # a duplicate of g1
        group(s, "g3", "党建学习群", idle_days=1, members=("owner1", "x1", "x2", "x3"))
    seen = _traced(db)
    report = sweep(db, NOW, settings, apply=True)
    assert [(st.group_id, st.action, st.result) for st in report.steps][:1] == [("g1", "warn", "done")]
    assert sum(FULL_READ in q for q in seen) == 1
    with db.session() as s:
        assert mark_warning_sent(s, "g1", NOW)
    seen.clear()
    report = sweep(db, NOW + timedelta(days=7), settings, apply=True)
    assert ("g1", "dissolve", "done") in [(st.group_id, st.action, st.result) for st in report.steps]
    assert sum(FULL_READ in q for q in seen) == 1
    with db.session() as s:  # the closing refresh saw the changes as a fresh read would
        assert s.get(Group, "g1").status == "dissolving"
        stored = {r.key for r in s.query(FindingRecord).filter_by(status="open")}
        assert stored == {f.key for f in compute_findings(s, NOW + timedelta(days=7), settings)}
        assert not any("duplicate" in k for k in stored)  # g1 no longer counts: g2 and g3 are not duplicates


def test_a_dry_run_streams_them_once_too(sqlite_db, settings):
    with sqlite_db.session() as s:
        seed_people(s)
        group(s, "g1", "防汛抗旱群")
    seen = _traced(sqlite_db)
    report = sweep(sqlite_db, NOW, settings)
    assert [(st.action, st.result) for st in report.steps] == [("warn", "planned")]
    assert sum(FULL_READ in q for q in seen) == 1
