"""Jobs persisted in the database, the runtime registry, and one leader on PostgreSQL."""
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text

from scheduler import jobs, registry
from scheduler.service import SchedulerService, build_scheduler, ensure_jobs, job_specs
from storage.models import Notice


def test_jobs_survive_a_restart(runtime):
    svc = SchedulerService(runtime, key="t-restart", poll_seconds=0.2).start()
    assert svc.is_leader
    names = {j.id for j in svc.scheduler.get_jobs()}
    assert names == {n for n, _ in job_specs(runtime.settings)}
    before = {j.id: j.next_run_time for j in svc.scheduler.get_jobs()}
    assert all(j.func_ref == "scheduler.jobs:run_job" for j in svc.scheduler.get_jobs())
    svc.shutdown()
    with runtime.db.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM apscheduler_jobs")).scalar() == len(names)
    # a new scheduler object on the same database sees them, with their stored next run times
    sched = build_scheduler(runtime)
    sched.start(paused=True)
    try:
        assert ensure_jobs(sched, runtime.settings) == []  # nothing had to be re-added
        assert {j.id: j.next_run_time for j in sched.get_jobs()} == before
    finally:
        sched.shutdown(wait=False)


def test_job_finds_runtime_through_registry(runtime, clock):
    from storage import repo

    registry.register(runtime, "t-reg")
    try:
        with runtime.db.session() as s:
            g = repo.ensure_group(s, group_id="g1", platform="wecom", at=clock(), name="秋粮收购专班")
            g.temporary, g.owner_id = True, "zhang"
            g.expires_at = (clock().astimezone(runtime.settings.tz) + timedelta(days=3)).date()
        assert jobs.run_job("expiry_reminders", "t-reg") == 1
        assert jobs.run_job("expiry_reminders", "t-reg") == 1  # idempotent by dedupe key
        with runtime.db.session() as s:
            n = s.execute(select(Notice)).scalar_one()
            assert n.person_id == "zhang" and "还有3天" in n.text
        stats = jobs.run_job("deliver_notices", "t-reg")  # Monday 10:00 Beijing: working time
        assert stats.messages == 1
    finally:
        registry.unregister("t-reg")


def _wait(pred, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_two_instances_on_postgresql_one_leader(request, settings, clock):
    from tests.conftest import _SCHEMA, PG_SKIP, PG_URL

    if not PG_URL:
        pytest.skip(PG_SKIP)
    from bot.runtime import Runtime
    from storage.db import Database

    pg = request.getfixturevalue("_pg_db")
    # two instances: separate engines (and connection pools) on the same database
    dbs = [Database(PG_URL, migrate=False, connect_args={"options": f"-csearch_path={_SCHEMA}"}) for _ in range(2)]
    rts = [Runtime(settings.model_copy(update={"database_url": PG_URL}), db=d, clock=clock) for d in dbs]
    a = SchedulerService(rts[0], key="pg-a", poll_seconds=0.3, lock_key=990001).start()
    b = SchedulerService(rts[1], key="pg-b", poll_seconds=0.3, lock_key=990001).start()
    try:
        time.sleep(1.0)
        assert a.is_leader and not b.is_leader
        # kill the leader's lock connection abruptly (as if its process died)
        pid = a.lock.conn.connection.dbapi_connection.info.backend_pid
        with pg.engine.connect() as c:
            assert c.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        assert _wait(lambda: b.is_leader), "standby did not take over"
        assert _wait(lambda: not a.is_leader), "old leader kept running jobs"
        time.sleep(1.0)
        assert b.is_leader and not a.is_leader  # the old leader does not win the lock back
    finally:
        a.shutdown()
        b.shutdown()
        for d in dbs:
            d.dispose()
