"""SIGKILL ``qunzhi serve`` in the middle of a burst of callbacks, restart it, replay what WeCom
would retry (every request that did not get a 200, same msgid, new nonce): every message is
stored exactly once and every acknowledged one survived the kill (group commit acknowledges only
after the commit). The heavy version (benchmarks/run_heavy.py) uses QUNZHI_FAULT_MESSAGES=5000."""
from __future__ import annotations

import asyncio
import os
import signal
import uuid

import pytest

from benchmarks.ingest import (Generator, Server, count_stored, drop_pg_schema, pg_schema_url, random_aes_key,
                               qunzhi_env)
from tests.conftest import PG_SKIP, PG_URL

N = int(os.environ.get("QUNZHI_FAULT_MESSAGES", "400"))


async def _burst(port: int, reqs, kill_after: int, server: Server) -> dict[int, int]:
    import aiohttp

    status: dict[int, int] = {}
    acked = 0
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}",
                                     connector=aiohttp.TCPConnector(limit=32),
                                     timeout=aiohttp.ClientTimeout(total=10)) as s:
        async def one(i, p, b):
            nonlocal acked
            try:
                async with s.post(p, data=b, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    status[i] = r.status
                    if r.status == 200:
                        acked += 1
                        if acked == kill_after:
                            server.proc.send_signal(signal.SIGKILL)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                status[i] = -1

        await asyncio.gather(*(one(i, p, b) for i, (p, b) in enumerate(reqs)))
    return status


async def _replay(port: int, reqs) -> dict[int, int]:
    import aiohttp

    out = {}
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=aiohttp.TCPConnector(limit=16)) as s:
        async def one(i, p, b):
            async with s.post(p, data=b, headers={"Content-Type": "application/json"}) as r:
                await r.read()
                out[i] = r.status

        await asyncio.gather(*(one(i, p, b) for i, (p, b) in reqs))
    return out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_mid_burst_then_retries_store_each_message_once(tmp_path, backend):
    cleanup = lambda: None  # noqa: E731
    if backend == "postgresql":
        if not PG_URL:
            pytest.skip(PG_SKIP)
        schema = f"qz_fault_{uuid.uuid4().hex[:8]}"
        url = pg_schema_url(PG_URL, schema)
        cleanup = lambda: drop_pg_schema(PG_URL, schema)  # noqa: E731
    else:
        url = f"sqlite:///{tmp_path / 'fault.db'}"
    token, key = "faultToken" + uuid.uuid4().hex[:6], random_aes_key()
    env = qunzhi_env(url, token, key)
    gen = Generator(token, key, groups=40, users=200)
    reqs, msgs = gen.batch(N)
    srv = Server("qunzhi", env, tmp_path)
    try:
        status = asyncio.run(_burst(srv.port, reqs, N // 4, srv))
        srv.proc.wait(10)
        assert srv.proc.returncode == -signal.SIGKILL
        acked = {i for i, st in status.items() if st == 200}
        assert N // 4 <= len(acked) < N, "the kill landed in the middle of the burst"
        after_kill = count_stored(url)
        keys = [f"aibot:{m['msgid']}" for m in msgs]
        assert {keys[i] for i in acked} <= after_kill["keys"], "an acknowledged message was lost by the kill"

        srv = Server("qunzhi", env, tmp_path, port=srv.port)  # restart (same port, as behind a proxy)
        retry = [(i, gen.request(msgs[i])) for i in range(N) if i not in acked]  # WeCom: new nonce, same msgid
        replayed = asyncio.run(_replay(srv.port, [(i, r) for i, r in retry]))
        assert set(replayed.values()) == {200}
        final = count_stored(url)
        assert final["keys"] == set(keys), "every message stored"
        assert final["messages"] == N and final["distinct_keys"] == N, "none doubled"
        assert final["group_counter_sum"] == N, "group counters count each message once"
    finally:
        srv.kill()
        cleanup()
