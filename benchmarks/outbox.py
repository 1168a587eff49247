"""Outbox throughput into the local fake WeCom server, with the rate limits honoured.

    .venv/bin/python benchmarks/outbox.py [--messages 5000] [--recipients 1000] [--workers 32] [--db URL]

Per-recipient limits (30 a minute per member) are honoured by spreading the messages over
``--recipients`` people; the global client-side cap is ``--global-rate`` per second.
Prints messages per second and the ratio to the goal (1,000/s).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL = 1000.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--recipients", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--global-rate", type=float, default=1500.0)
    ap.add_argument("--db", default="")
    a = ap.parse_args()

    from bot.senders.wecom import WeComSender
    from bot.settings import Settings
    from scheduler.outbox import Dispatcher
    from storage.db import Database
    from storage.models import OutboxMessage
    from tests.fakes.fake_wecom import CORP_ID, SECRET, FakeWeCom

    fake = FakeWeCom().start()
    url = a.db or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    db = Database(url)
    settings = Settings(_env_file=None, wecom_corp_id=CORP_ID, wecom_secret=SECRET, wecom_token="QDG6eK",
                        wecom_aes_key="jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", wecom_agent_id="218",
                        wecom_api_base=fake.base_url, database_url=url)
    sender = WeComSender(settings)
    now = datetime.now(timezone.utc)
    with db.session() as s:
        s.bulk_insert_mappings(OutboxMessage, [
            {"created_at": now, "channel": "user", "recipient": f"u{i % a.recipients}", "kind": "bench",
             "payload": {"text": f"基准测试消息 {i}"}, "status": "pending", "attempts": 0, "next_attempt_at": now}
            for i in range(a.messages)])
    d = Dispatcher(db, sender, batch=a.batch, workers=a.workers, global_per_second=a.global_rate)
    t0 = time.perf_counter()
    d.drain()
    elapsed = time.perf_counter() - t0
    sent = d.stats.sent
    calls = len(fake.calls_to("message/send"))
    rate = sent / elapsed
    print(f"db={db.dialect} messages={a.messages} recipients={a.recipients} workers={a.workers} "
          f"global_cap={a.global_rate}/s")
    print(f"sent={sent} deferred={d.stats.deferred} fake_calls={calls} elapsed={elapsed:.2f}s")
    print(f"throughput={rate:.0f} msg/s  goal={GOAL:.0f} msg/s  ratio={rate / GOAL:.2f}")
    d.close()
    fake.stop()
    db.dispose()


if __name__ == "__main__":
    main()
