"""Outbox throughput into the local fake WeCom server, with the rate limits honoured.

    .venv/bin/python benchmarks/outbox.py [--messages 5000] [--recipients 1000] [--workers 32] [--db URL]

Per-recipient limits (30 a minute per member) are honoured by spreading the messages over
``--recipients`` people; the global client-side cap is ``--global-rate`` per second.
Prints messages per second and the ratio to the goal (1,000/s), and checks that the fake
delivered every message exactly once.

With ``--db postgresql+psycopg://…/test`` the run happens in a throwaway schema
(``qz_bench_<pid>``, passed as ``?options=-csearch_path%3D<schema>``) that is dropped at the end:
nothing is left in the database's ``public`` schema.
"""
from __future__ import annotations

import argparse
import os
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
    ap.add_argument("--fake-in-process", action="store_true",
                    help="run the fake server in this process (it then competes for the GIL with the dispatcher)")
    a = ap.parse_args()

    from tests.fakes.fake_wecom import FakeWeCom

    fake = _Remote(*FakeWeCom().serve_in_child()) if not a.fake_in_process else FakeWeCom().start()
    url = a.db or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    schema = None
    if url.startswith("postgresql"):
        from sqlalchemy import create_engine, text

        schema = f"qz_bench_{os.getpid()}"
        admin = create_engine(a.db)
        with admin.begin() as c:
            c.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        url = f"{a.db}{'&' if '?' in a.db else '?'}options=-csearch_path%3D{schema}"
    try:
        _run(a, fake, url)
    finally:
        fake.stop()
        if schema:
            with admin.begin() as c:
                c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()


class _Remote:
    """The fake WeCom server in a child process (like the real one, it has its own CPU)."""

    def __init__(self, proc, root: str):
        self.proc, self.root = proc, root
        self.base_url = root + "cgi-bin/"

    def stats(self) -> dict:
        import requests

        return requests.get(self.root + "_fake/stats", timeout=30).json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(10)


def _fake_stats(fake) -> dict:
    if isinstance(fake, _Remote):
        return fake.stats()
    return {"calls": {p: len(fake.calls_to(p)) for p in ("message/send", "gettoken")},
            "delivered": list(fake.delivered_counts("message/send").values()), "duplicates": fake.duplicates}


def _run(a, fake, url: str) -> None:
    from platforms.wecom.sender import WeComSender
    from config.settings import Settings
    from scheduler.outbox import Dispatcher
    from storage.db import Database
    from storage.models import OutboxMessage
    from tests.fakes.fake_wecom import CORP_ID, SECRET

    db = Database(url)
    settings = Settings(_env_file=None, wecom_corp_id=CORP_ID, wecom_secret=SECRET, wecom_token="QDG6eK",
                        wecom_aes_key="jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", wecom_agent_id="218",
                        wecom_api_base=fake.base_url, database_url=url)
    sender = WeComSender(settings, pool_size=max(a.workers, 10))
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
    st = _fake_stats(fake)
    calls = st["calls"].get("message/send", 0)
    once = sum(1 for n in st["delivered"] if n == 1)
    rate = sent / elapsed
    print(f"db={db.dialect} messages={a.messages} recipients={a.recipients} workers={a.workers} "
          f"batch={a.batch} global_cap={a.global_rate}/s fake={'in-process' if a.fake_in_process else 'child process'}")
    print(f"sent={sent} deferred={d.stats.deferred} retried={d.stats.retried} fake_calls={calls} "
          f"delivered_once={once} delivered_twice_or_more={len(st['delivered']) - once} "
          f"duplicates_dropped={st['duplicates']} gettoken={st['calls'].get('gettoken', 0)} elapsed={elapsed:.2f}s")
    print(f"throughput={rate:.0f} msg/s  goal={GOAL:.0f} msg/s  ratio={rate / GOAL:.2f}")
    d.close()
    db.dispose()


if __name__ == "__main__":
    main()
