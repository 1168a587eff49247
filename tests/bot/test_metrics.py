"""/metrics: Prometheus text for the county's monitoring, on loopback or with the admin token only,
summed over the processes of an instance (multiprocess mode)."""
import subprocess
import sys
from datetime import datetime, timezone

from fastapi.testclient import TestClient

from bot.app import create_app
from storage.outbox import enqueue
from tests.conftest import ADMIN_TOKEN

NOW = datetime(2026, 11, 23, 2, tzinfo=timezone.utc)


def _client(runtime, host: str) -> TestClient:
    return TestClient(create_app(runtime=runtime, start_scheduler=False), client=(host, 50000))


def test_loopback_reads_the_metrics_with_the_outbox_queue(runtime):
    with runtime.db.session() as s:
        enqueue(s, channel="user", recipient="zhangsan", kind="reminder", payload={"text": "x"}, at=NOW,
                dedupe_key="m1")
    with _client(runtime, "127.0.0.1") as c:
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert 'qunzhi_outbox_queue{status="pending"} 1.0' in r.text
    assert "# TYPE qunzhi_callbacks_total counter" in r.text and "qunzhi_writer_batch_seconds" in r.text


def test_anyone_else_needs_the_admin_token(runtime):
    with _client(runtime, "203.0.113.7") as c:
        assert c.get("/metrics").status_code == 404
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong-token-guess"}).status_code == 404
        r = c.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200 and "qunzhi_outbox_queue" in r.text
    assert "/metrics" not in c.get("/openapi.json").text  # not part of the documented API


SCRIPT = """
import sys, telemetry
telemetry.configure(sys.argv[1])
from telemetry.metrics import CALLBACKS, WRITER_BATCH
CALLBACKS.labels("wecom", "stored").inc(int(sys.argv[2]))
WRITER_BATCH.observe(8)
"""


def test_processes_of_one_instance_are_summed(tmp_path, monkeypatch):
    for n in ("3", "4"):  # e.g. the web process and its writer process
        subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), n], check=True, timeout=60)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    import telemetry
    body, _ = telemetry.render()
    text = body.decode()
    assert 'qunzhi_callbacks_total{outcome="stored",platform="wecom"} 7.0' in text
    assert "qunzhi_writer_batch_events_count 2.0" in text


def test_deliveries_and_job_runs_are_counted(runtime, fake_wecom):
    from types import SimpleNamespace

    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED

    from platforms.wecom.sender import WeComSender
    from scheduler.outbox import Dispatcher
    from scheduler.service import count_job_run
    from telemetry.metrics import JOB_RUNS, OUTBOX_DELIVERIES

    sent = OUTBOX_DELIVERIES.labels("user", "sent")
    before = sent._value.get()
    with runtime.db.session() as s:
        enqueue(s, channel="user", recipient="zhangsan", kind="reminder", payload={"text": "x"}, at=NOW,
                dedupe_key="m2")
    settings = runtime.settings.model_copy(update={"wecom_api_base": fake_wecom.base_url})
    d = Dispatcher(runtime.db, WeComSender(settings, timeout=2.0), clock=lambda: NOW)
    assert d.run_once() == 1
    assert sent._value.get() == before + 1
    ok, failed = JOB_RUNS.labels("sweep", "ok"), JOB_RUNS.labels("sweep", "failed")
    ok0, failed0 = ok._value.get(), failed._value.get()
    count_job_run(SimpleNamespace(code=EVENT_JOB_EXECUTED, job_id="sweep", exception=None))
    count_job_run(SimpleNamespace(code=EVENT_JOB_ERROR, job_id="sweep", exception=RuntimeError("x")))
    assert (ok._value.get(), failed._value.get()) == (ok0 + 1, failed0 + 1)


def test_callbacks_and_writer_batches_are_counted(runtime):
    import asyncio

    from governance.events import Event
    from telemetry.metrics import CALLBACKS, WRITER_BATCH

    stored = CALLBACKS.labels("wecom", "stored")
    before, batches = stored._value.get(), WRITER_BATCH._sum.get()
    runtime.group_commit = True
    e = Event(platform="wecom", kind="message", sender_id="zhangsan", at=NOW, text="收到", group_id="wrM", msg_id="m-x")
    try:
        asyncio.run(runtime.process_async(e, deadline=30))
    finally:
        runtime.close()
    assert stored._value.get() == before + 1
    assert WRITER_BATCH._sum.get() >= batches + 1  # one batch of at least this event
