"""Running the scheduler: APScheduler 3 with its jobs in the project's database, one leader.

* Jobs live in the ``apscheduler_jobs`` table (``SQLAlchemyJobStore`` on the runtime's engine):
  a restart loses nothing; missed runs are coalesced into one (``coalesce=True``) and run if
  they are less than ``MISFIRE_GRACE`` late. Jobs are added only when missing, so a restart
  keeps each job's stored ``next_run_time`` (and thus runs what it missed).
* PostgreSQL, several instances: only the holder of a session-level advisory lock, held on a
  dedicated connection, runs jobs. The others poll for the lock every ``poll_seconds``; when
  the leader dies its connection closes, PostgreSQL frees the lock and the next poll wins.
  The leader checks its connection on every poll and stops its scheduler if it is gone.
* SQLite: a single instance is assumed (no lock); do not point two processes at one file.
"""
from __future__ import annotations

import logging
import threading
from datetime import timedelta

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import text

from scheduler import registry

log = logging.getLogger("qunzhi.scheduler")

LEADER_LOCK_KEY = 727279  # distinct from storage.lifecycle.SWEEP_LOCK_KEY (727276): the leader holds its lock while sweeping
MISFIRE_GRACE = int(timedelta(hours=12).total_seconds())
JOB_REF = "scheduler.jobs:run_job"


def job_specs(settings) -> list[tuple[str, object]]:
    """(job name, trigger) pairs; cron times are local (settings.timezone)."""
    tz = settings.tz
    return [
        ("dispatch_outbox", IntervalTrigger(seconds=5, timezone=tz)),
        ("deliver_notices", IntervalTrigger(minutes=10, timezone=tz)),
        ("import_activity_counts", CronTrigger(hour=7, minute=30, timezone=tz)),  # before the sweep
        ("sweep", CronTrigger(hour=8, minute=30, timezone=tz)),
        ("expiry_reminders", CronTrigger(hour=8, minute=40, timezone=tz)),
        ("advance_pending", IntervalTrigger(minutes=1, timezone=tz)),
        ("platform_requests", IntervalTrigger(minutes=1, timezone=tz)),
        ("sync_groups", IntervalTrigger(hours=6, timezone=tz)),
        ("deadlines", IntervalTrigger(hours=1, timezone=tz)),
        ("refresh_findings", IntervalTrigger(hours=1, timezone=tz)),
        ("lookback", CronTrigger(hour=8, minute=50, timezone=tz)),
        ("reconcile_reviews", CronTrigger(hour=9, minute=10, timezone=tz)),
        ("weekly_pulse", CronTrigger(day_of_week="tue", hour=10, minute=0, timezone=tz)),
        ("commission_digest", CronTrigger(day_of_week="mon", hour=9, minute=30, timezone=tz)),
        ("daily_stats", CronTrigger(hour=23, minute=50, timezone=tz)),
        # windows close at local midnight (pulse weeks, useless-vote windows) or UTC midnight (dedupe days)
        ("close_anonymous_windows", CronTrigger(hour=0, minute=20, timezone=tz)),
    ]


def build_scheduler(runtime, key: str = registry.DEFAULT_KEY) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=runtime.db.engine, tablename="apscheduler_jobs")},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE},
        timezone=runtime.settings.tz,
    )
    scheduler.add_listener(count_job_run, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    return scheduler


def count_job_run(event) -> None:
    """Every run of a job, by outcome, for /metrics (``qunzhi_job_runs_total``)."""
    from telemetry.metrics import JOB_RUNS

    outcome = "missed" if event.code == EVENT_JOB_MISSED else "failed" if getattr(event, "exception", None) else "ok"
    JOB_RUNS.labels(event.job_id, outcome).inc()


def ensure_jobs(scheduler: BackgroundScheduler, settings, key: str = registry.DEFAULT_KEY) -> list[str]:
    """Add the jobs that are not stored yet (stored ones keep their next run time)."""
    added = []
    for name, trigger in job_specs(settings):
        if scheduler.get_job(name) is None:
            scheduler.add_job(JOB_REF, trigger, args=[name, key], id=name, name=name, replace_existing=True)
            added.append(name)
    return added


class LeaderLock:
    """A PostgreSQL advisory lock on its own connection (always granted on SQLite)."""

    def __init__(self, engine, key: int = LEADER_LOCK_KEY):
        self.engine, self.key = engine, key
        self.conn = None

    @property
    def single_instance(self) -> bool:
        return self.engine.dialect.name != "postgresql"

    def held(self) -> bool:
        """Try to take the lock, or check that we still hold it."""
        if self.single_instance:
            return True
        try:
            if self.conn is None:
                self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                if not self.conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar():
                    self.conn.close()
                    self.conn = None
                    return False
                return True
            self.conn.execute(text("SELECT 1"))
            return True
        except Exception as e:  # the connection died: the lock is gone with it
            log.warning("leader connection lost: %r", e)
            self.release()
            return False

    def release(self) -> None:
        if self.conn is not None:
            # Best effort: on a dead connection the lock is already gone with the session.
            try:
                self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            except Exception as e:
                log.debug("advisory unlock failed (connection gone?): %r", e)
            try:
                self.conn.close()
            except Exception as e:
                log.debug("closing the leader connection failed: %r", e)
            self.conn = None


class SchedulerService:
    """Leader election plus the APScheduler instance; ``shutdown()`` stops both."""

    def __init__(self, runtime, *, key: str = registry.DEFAULT_KEY, poll_seconds: float = 5.0,
                 lock_key: int = LEADER_LOCK_KEY):
        self.runtime, self.key, self.poll_seconds = runtime, key, poll_seconds
        self.lock = LeaderLock(runtime.db.engine, lock_key)
        self.scheduler: BackgroundScheduler | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        return self.scheduler is not None and self.scheduler.running

    def start(self) -> "SchedulerService":
        registry.register(self.runtime, self.key)
        self.runtime.scheduler = self
        self._tick()
        self._thread = threading.Thread(target=self._watch, name="qunzhi-leader", daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self._tick()
            except Exception:
                log.exception("leader poll failed")

    def _tick(self) -> None:
        if self.lock.held():
            if not self.is_leader:
                self._lead()
        elif self.is_leader:
            log.warning("lost the leader lock: stopping jobs")
            self._follow()

    def _lead(self) -> None:
        log.info("this instance is the scheduler leader")
        sched = build_scheduler(self.runtime, self.key)
        sched.start(paused=True)
        ensure_jobs(sched, self.runtime.settings, self.key)
        sched.resume()
        self.scheduler = sched

    def _follow(self) -> None:
        sched, self.scheduler = self.scheduler, None
        if sched is not None:
            sched.shutdown(wait=False)

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_seconds + 5)
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        self.lock.release()
        registry.unregister(self.key)


def start_in_process(runtime, **kw) -> SchedulerService:
    """Called by the app's lifespan (``qunzhi serve``): run the scheduler in this process."""
    from scheduler.jobs import holiday_schedule_check

    holiday_schedule_check(runtime)  # logged; repeated daily by daily_stats
    return SchedulerService(runtime, **kw).start()
