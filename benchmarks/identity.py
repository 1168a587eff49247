"""What resolving a batch's senders costs (``storage.identity.resolve_senders``, called at the start
of every ingest batch).

    .venv/bin/python benchmarks/identity.py [--events 128] [--persons 5000] [--db URL]

A ledger of ``--persons`` persons, each with its own account; a batch of ``--events`` messages from
64 of them. Prints the median and best microseconds per batch with no links, then with every
fourth sender writing through the bridge from a WeChat account linked to them; on PostgreSQL also through the autocommit
connection of the one-statement ingest. With ``--db postgresql+psycopg://…`` the run happens in a
throwaway schema (``qz_bench_identity_<pid>``) that is dropped at the end.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

T = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)


def timed(f, rounds: int = 15, per_round: int = 50) -> tuple[float, float]:
    for _ in range(20):
        f()
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(per_round):
            f()
        samples.append((time.perf_counter() - t0) / per_round * 1e6)
    return statistics.median(samples), min(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=128)
    ap.add_argument("--persons", type=int, default=5000)
    ap.add_argument("--db", default="")
    a = ap.parse_args()

    from sqlalchemy import create_engine, text

    from governance.events import Event
    from storage import identity
    from storage.db import Database
    from storage.models import Person, PersonAccount

    schema = None
    if a.db.startswith("postgresql"):
        schema = f"qz_bench_identity_{os.getpid()}"
        admin = create_engine(a.db)
        with admin.begin() as c:
            c.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{a.db}{'&' if '?' in a.db else '?'}options=-csearch_path%3D{schema}"
    else:
        url = a.db or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    db = Database(url)
    try:
        with db.session() as s:
            s.add_all(Person(id=f"u{i}", role="cadre", created_at=T) for i in range(a.persons))
            s.flush()
            s.add_all(PersonAccount(platform="wecom", account_id=f"u{i}", person_id=f"u{i}", linked_at=T)
                      for i in range(a.persons))
        if schema:
            with db.engine.begin() as c:
                c.execute(text("ANALYZE person_accounts"))
        events = [Event(platform="wecom", kind="message", sender_id=f"u{i % 64}", at=T, group_id="g1",
                        msg_id=f"m{i}") for i in range(a.events)]
        with db.session() as s:  # 16 of the 64 also write through the bridge, linked to them
            s.add_all(PersonAccount(platform="wechat", account_id=f"w{i}", person_id=f"u{i}", linked_at=T)
                      for i in range(0, 64, 4))
        bridged = [Event(platform="wechat", kind="message", sender_id=f"wechat:w{i % 64}", at=T,
                         group_id="wechat:g1", msg_id=f"b{i}") if i % 64 % 4 == 0 else e
                   for i, e in enumerate(events)]
        runs = []
        for label in ("no links", "links"):
            if label == "links":
                events = bridged
            with db.session() as s:
                runs.append((f"{label}, session", timed(lambda: identity.resolve_senders(s, events))))
            if schema:
                conn = db.ingest_connection()
                runs.append((f"{label}, one-statement connection", timed(lambda: identity.resolve_senders(conn, events))))
                db.drop_ingest_connection()
        for label, (median, best) in runs:
            print(f"{db.dialect}, {a.events} events, {label}: median {median:.0f} µs, best {best:.0f} µs per batch")
    finally:
        db.dispose()
        if schema:
            with admin.begin() as c:
                c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


if __name__ == "__main__":
    main()
