"""Two ``qunzhi serve`` processes (scheduler on) sharing one PostgreSQL: WeCom's retries of the same
callback land on either, each message is stored once; exactly one scheduler leader; SIGKILL the
leader and the other takes over within a minute."""
from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import pytest

from benchmarks.ingest import (Generator, Server, count_stored, drop_pg_schema, pg_schema_url, qunzhi_env,
                               random_aes_key)
from tests.conftest import PG_SKIP, PG_URL

N = int(os.environ.get("QUNZHI_FAULT_MESSAGES", "200")) // 2
LEADER = "this instance is the scheduler leader"


async def _both(ports, gen, msgs) -> list[int]:
    import aiohttp

    statuses = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as s:
        async def one(port, m):
            p, b = gen.request(m)  # a retry: same msgid, new nonce
            async with s.post(f"http://127.0.0.1:{port}{p}", data=b,
                              headers={"Content-Type": "application/json"}) as r:
                await r.read()
                statuses.append(r.status)

        await asyncio.gather(*(one(port, m) for m in msgs for port in ports))
    return statuses


def _leaders(servers) -> list[Server]:
    return [s for s in servers if LEADER in s.log.read_text(errors="replace")]


def _wait(pred, timeout: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.2)
    return None


def test_two_instances_store_once_one_leader_and_failover(tmp_path):
    if not PG_URL:
        pytest.skip(PG_SKIP)
    schema = f"qz_two_{uuid.uuid4().hex[:6]}"
    url = pg_schema_url(PG_URL, schema)
    token, key = "twoToken" + uuid.uuid4().hex[:6], random_aes_key()
    env = qunzhi_env(url, token, key, QUNZHI_RUN_SCHEDULER="true")
    servers = []
    try:
        servers = [Server("qunzhi", env, tmp_path, scheduler=True) for _ in range(2)]
        gen = Generator(token, key, groups=20, users=100)
        msgs = [gen.message() for _ in range(N)]
        statuses = asyncio.run(_both([s.port for s in servers], gen, msgs))
        assert set(statuses) == {200}
        stored = count_stored(url)
        assert stored["keys"] == {f"aibot:{m['msgid']}" for m in msgs}
        assert stored["messages"] == N and stored["group_counter_sum"] == N

        assert _wait(lambda: len(_leaders(servers)) >= 1, 30) is not None, "a leader was elected"
        time.sleep(6)  # more than one leader poll: still exactly one
        leaders = _leaders(servers)
        assert len(leaders) == 1
        leader = leaders[0]
        follower = next(s for s in servers if s is not leader)
        leader.kill(signal.SIGKILL)
        took = _wait(lambda: LEADER in follower.log.read_text(errors="replace"), 60)
        assert took is not None, "the other instance took over within a minute"
        print(f"failover took {took:.1f} s")
    finally:
        for s in servers:
            s.kill()
        drop_pg_schema(PG_URL, schema)
