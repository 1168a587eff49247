"""Ingest speed: encrypted WeCom AI-bot group callbacks through a real ``qunzhi serve``.

    python benchmarks/ingest.py                                  # SQLite (temp file)
    python benchmarks/ingest.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    python benchmarks/ingest.py --quick                          # a short smoke run
    python benchmarks/ingest.py --modes group,nobulk,single      # also without the bulk path / group commit

What is measured (all servers are separate processes started here, all clients are separate
processes too):

* ``qunzhi serve --no-scheduler`` (uvicorn, one process) receiving ``POST /wecom/aibot/callback``:
  AI-bot **group** messages (``chattype=group``, an @-mention of the bot, the only group traffic
  WeCom delivers to a bot). Each one is verified (signature, timestamp window), AES-decrypted, deduplicated by ``msgid`` in ``processed_events``, stored as activity
  (``messages`` row, sender's membership, the group's counters) and answered with an encrypted
  passive reply. Every request is distinct: unique msgid, fresh nonce, timestamp of the run;
  bodies are encrypted before the clock starts.
* a bare FastAPI endpoint that only reads the body and answers ``success``, served by
  ``bot.server.run`` exactly as ``qunzhi serve`` does, receiving the same bodies.

Phases: (1) maximum rate, closed loop, ``wrk`` when installed (else an aiohttp closed loop), in
``--rounds`` alternating rounds (bare, each qunzhi mode, bare, ...; all servers stay up), each
figure the median of its rounds and the ratio the median of the per-round ratios: the machine
is shared and noisy, and a burst of load elsewhere then hits one round, not one server;
(2) per server, latency at half its median maximum (wrk with a think time, latency counted by
wrk from the send; without wrk an aiohttp open loop counting from the scheduled send time);
(3) for qunzhi: every message of phase 1 is sent again as WeCom retries it (same msgid, new
nonce) and the database is counted: every distinct msgid stored exactly once, every
acknowledged (200) request stored, the groups' counters equal the number of stored messages.

Modes (``--modes``): ``group`` is the default server (group commit, and inside each batch the
bulk ingest path: plain activity stored with a few multi-row statements per batch, see
``bot/runtime.py``); ``nobulk`` is group commit with every event through ``handle_event``
(``QUNZHI_BULK_INGEST=0``, the state before the bulk path); ``single`` is one transaction per
request (``QUNZHI_GROUP_COMMIT=0``). Every mode gets a fresh database and the same checks.

A request answered 503 (the event was not stored within the reply deadline) is not counted as
acknowledged, and the replay phase sends it again, as WeCom would.

Goals: qunzhi/bare requests per second >= 0.5; p99 <= 50 ms at half the maximum rate.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CALLBACK = "/wecom/aibot/callback"
BARE = "/bare"
TEXTS = ["@群治 收到", "@群治 今天下午三点开会，请各村准时参加", "@群治 好的", "@群治 材料已上传，请查收",
         "@群治 明天上午报送防汛值班表", "@群治 👍", "@群治 收到，马上办"]


# --- servers --------------------------------------------------------------------------------
def bare_app():
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse
    from starlette.requests import Request

    # With ``from __future__ import annotations`` FastAPI resolves the endpoint's annotations in
    # the module's globals: a ``Request`` imported only here would be taken for a query parameter
    # and every request answered 422 without reading the body.
    globals()["Request"] = Request

    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.post(BARE)
    @app.post(CALLBACK)
    async def bare(request: Request) -> PlainTextResponse:
        await request.body()
        return PlainTextResponse("success")

    return app


def serve_bare(host: str, port: int) -> None:
    from bot.server import run
    from config.settings import Settings

    # The same server as ``qunzhi serve`` (bot/cli.py -> bot/server.py: guarded h11 protocol).
    run(bare_app(), host=host, port=port, settings=Settings(_env_file=None))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)  # not listening yet
        time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def random_aes_key() -> str:
    return base64.b64encode(os.urandom(32)).decode().rstrip("=")


TUNING = ("QUNZHI_GROUP_COMMIT_", "QUNZHI_WRITER_", "QUNZHI_INGEST_WRITER")


def qunzhi_env(database_url: str, token: str, aes_key: str, **extra: str) -> dict[str, str]:
    # The caller's QUNZHI_ settings stay out (the benchmark sets its own), except the writer's
    # tuning knobs, so they can be compared: QUNZHI_GROUP_COMMIT_*, QUNZHI_WRITER_*, QUNZHI_INGEST_WRITER.
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUNZHI_") or k.startswith(TUNING)}
    env.update({
        "QUNZHI_ENVIRONMENT": "development", "QUNZHI_DATABASE_URL": database_url,
        "QUNZHI_AIBOT_TOKEN": token, "QUNZHI_AIBOT_AES_KEY": aes_key, "QUNZHI_RUN_SCHEDULER": "false",
        "QUNZHI_ADMIN_TOKEN": "bench-admin-" + uuid.uuid4().hex, "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def qunzhi_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("qunzhi")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "bot.cli"]


class Server:
    """A server subprocess (``qunzhi serve`` or the bare app); stderr kept in a log file."""

    def __init__(self, kind: str, env: dict[str, str], workdir: Path, port: int | None = None,
                 scheduler: bool = False):
        self.kind, self.port, self.workdir = kind, port or free_port(), workdir
        self.log = workdir / f"{kind}-{self.port}.log"
        if kind == "bare":
            cmd = [sys.executable, str(Path(__file__).resolve()), "_bare", "--port", str(self.port)]
        else:
            cmd = qunzhi_cmd() + ["serve", "--scheduler" if scheduler else "--no-scheduler", "--host", "127.0.0.1",
                                  "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, env=env, cwd=str(workdir), stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "ab"), start_new_session=True)
        wait_ready(self.port, self.proc)

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- requests -------------------------------------------------------------------------------
class Generator:
    """Encrypted AI-bot group callbacks, each with a unique msgid and a fresh nonce."""

    def __init__(self, token: str, aes_key: str, groups: int = 500, users: int = 3000, seed: int = 11):
        from platforms.wecom.crypto import CallbackCrypto

        self.token = token
        self.crypto = CallbackCrypto(token, aes_key, "", tolerance=0, clock=None)
        self.rng = random.Random(seed)
        self.groups, self.users = groups, users
        self.run = uuid.uuid4().hex[:8]
        self.seq = 0

    def message(self, msgid: str | None = None) -> dict:
        self.seq += 1
        g, u = self.rng.randrange(self.groups), self.rng.randrange(self.users)
        return {"msgid": msgid or f"bench-{self.run}-{self.seq}", "aibotid": "AIBOTBENCH",
                "chatid": f"wrkBench{g:05d}", "chattype": "group", "from": {"userid": f"cadre{u:05d}"},
                "response_url": "https://example.invalid/resp", "msgtype": "text",
                "text": {"content": self.rng.choice(TEXTS)}, "create_time": int(time.time())}

    def request(self, data: dict) -> tuple[str, str]:
        """(path with query, body) for one callback, encrypted and signed now."""
        from platforms.wecom.crypto import signature

        ts, nonce = str(int(time.time())), uuid.uuid4().hex[:16]
        enc = self.crypto.encrypt(json.dumps(data, ensure_ascii=False))
        sig = signature(self.token, ts, nonce, enc)
        return f"{CALLBACK}?msg_signature={sig}&timestamp={ts}&nonce={nonce}", json.dumps({"encrypt": enc})

    def batch(self, n: int) -> tuple[list[tuple[str, str]], list[dict]]:
        msgs = [self.message() for _ in range(n)]
        return [self.request(m) for m in msgs], msgs


def write_requests(path: Path, reqs: list[tuple[str, str]]) -> None:
    with open(path, "w") as f:
        for p, b in reqs:
            f.write(p + "\t" + b + "\n")


def read_requests(path: Path) -> list[tuple[str, str]]:
    out = []
    with open(path) as f:
        for line in f:
            p, b = line.rstrip("\n").split("\t", 1)
            out.append((p, b))
    return out


# --- clients (run as subprocesses) ----------------------------------------------------------
WRK_LUA = r"""
local counter = 1
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  reqs = {}
  for line in io.lines(args[1] .. "." .. tid) do
    local p, b = line:match("^([^\t]*)\t(.*)$")
    table.insert(reqs, wrk.format("POST", p, {["Content-Type"] = "application/json"}, b))
  end
  idx = 0
  ok = 0
  other = 0
  delay_ms = tonumber(args[2] or "0")
end
function delay()
  -- exponential think time (Poisson-like arrivals): a fixed pause would keep the connections in
  -- lock step and turn the offered load into bursts
  if delay_ms <= 0 then return 0 end
  return math.floor(-delay_ms * math.log(1 - math.random()) + 0.5)
end
function request()
  idx = idx + 1
  if idx > #reqs then idx = 1; wrapped = 1 end
  return reqs[idx]
end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local ok_total, other_total, wrapped_any = 0, 0, 0
  for _, t in ipairs(threads) do
    ok_total = ok_total + (t:get("ok") or 0)
    other_total = other_total + (t:get("other") or 0)
    wrapped_any = wrapped_any + (t:get("wrapped") or 0)
  end
  io.write(string.format('WRKJSON {"requests": %d, "duration_us": %d, "ok": %d, "other": %d, "wrapped": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, ok_total, other_total, wrapped_any, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def run_wrk(port: int, reqs: list[tuple[str, str]], duration: float, connections: int, threads: int,
            workdir: Path, delay_ms: int = 0) -> dict:
    base = workdir / f"wrk-{port}-{time.monotonic_ns()}.txt"
    for t in range(threads):
        write_requests(Path(f"{base}.{t}"), reqs[t::threads])
    script = workdir / "ingest.lua"
    script.write_text(WRK_LUA)
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, int(duration))}s",
                          "--timeout", "10s", "-s", str(script), f"http://127.0.0.1:{port}{BARE}", "--", str(base), str(delay_ms)],
                         capture_output=True, text=True, check=True)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON "))
    r = json.loads(line[len("WRKJSON "):])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["ok_rps"] = r["ok"] / (r["duration_us"] / 1e6)
    r["client"] = "wrk"
    for q in ("p50", "p90", "p99", "max"):
        r[f"{q}_ms"] = r[f"{q}_us"] / 1000
    r["achieved"] = r["rps"]
    for t in range(threads):
        Path(f"{base}.{t}").unlink()
    return r


async def _closed_loop(port: int, reqs: list[tuple[str, str]], duration: float | None, connections: int) -> dict:
    """Closed loop (one request per connection at a time): used when wrk is absent, and for replays."""
    import aiohttp

    conn = aiohttp.TCPConnector(limit=connections)
    statuses: dict[int, int] = {}
    failed: list[int] = []
    it = iter(range(len(reqs)))
    start = time.perf_counter()
    end = start + duration if duration else None
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=conn,
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        async def worker():
            for i in it:
                if end and time.perf_counter() > end:
                    return
                p, b = reqs[i]
                try:
                    async with session.post(p, data=b, headers={"Content-Type": "application/json"}) as r:
                        await r.read()
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                        if r.status != 200:
                            failed.append(i)
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    statuses[-1] = statuses.get(-1, 0) + 1
                    failed.append(i)

        await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    n = sum(statuses.values())
    return {"requests": n, "ok": statuses.get(200, 0), "statuses": {str(k): v for k, v in statuses.items()},
            "elapsed": elapsed, "rps": n / elapsed, "ok_rps": statuses.get(200, 0) / elapsed, "failed": failed,
            "client": "aiohttp"}


async def _open_loop(port: int, reqs: list[tuple[str, str]], rate: float, max_conn: int) -> dict:
    """Open loop: request i is due at start + i/rate; latency counts from that due time."""
    import aiohttp

    conn = aiohttp.TCPConnector(limit=max_conn)
    lat: list[float] = []
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=conn,
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        start = time.perf_counter() + 0.05

        async def one(i: int):
            due = start + i / rate
            p, b = reqs[i]
            try:
                async with session.post(p, data=b, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1
            except (aiohttp.ClientError, asyncio.TimeoutError):
                statuses[-1] = statuses.get(-1, 0) + 1
            lat.append(time.perf_counter() - due)

        tasks = []
        for i in range(len(reqs)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000 if lat else float("nan")

    return {"requests": len(lat), "ok": statuses.get(200, 0), "statuses": {str(k): v for k, v in statuses.items()},
            "rate": rate, "achieved": len(lat) / elapsed, "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "max_ms": lat[-1] * 1000 if lat else float("nan"), "client": "aiohttp-open-loop"}


def client_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["closed", "open"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--requests", required=True)
    ap.add_argument("--duration", type=float, default=0)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rate", type=float, default=0)
    a = ap.parse_args(argv)
    reqs = read_requests(Path(a.requests))
    if a.mode == "closed":
        r = asyncio.run(_closed_loop(a.port, reqs, a.duration or None, a.connections))
    else:
        r = asyncio.run(_open_loop(a.port, reqs, a.rate, 1024))
    print("RESULT " + json.dumps(r))


def run_client(mode: str, port: int, reqs: list[tuple[str, str]], workdir: Path, **kw) -> dict:
    path = workdir / f"reqs-{mode}-{port}-{time.monotonic_ns()}.txt"
    write_requests(path, reqs)
    cmd = [sys.executable, str(Path(__file__).resolve()), "_client", mode, "--port", str(port),
           "--requests", str(path)] + [f"--{k}={v}" for k, v in kw.items()]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    path.unlink()
    return json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))[7:])


LAT_CONNECTIONS = 16


def half_rate_latency(port: int, reqs: list[tuple[str, str]], rate: float, duration: float, workdir: Path) -> dict:
    """Latency at a fixed offered rate. With wrk: LAT_CONNECTIONS connections, each pausing
    LAT_CONNECTIONS/rate seconds between requests (wrk's delay()), latency measured by wrk from
    the send; without wrk: the aiohttp open loop (latency from the scheduled send time)."""
    if shutil.which("wrk"):
        d = max(0, int(round(LAT_CONNECTIONS / rate * 1000)))
        r = run_wrk(port, reqs, duration, LAT_CONNECTIONS, 1, workdir, delay_ms=d)
        r["rate"] = rate
        return r
    return run_client("open", port, reqs[:int(rate * duration)], workdir, rate=rate)


def max_rate(port: int, reqs: list[tuple[str, str]], duration: float, connections: int, workdir: Path,
             server: "Server | None" = None) -> dict:
    cpu = CpuMeter(server.proc.pid) if server is not None else None
    if shutil.which("wrk"):
        r = run_wrk(port, reqs, duration, connections, 2, workdir)
    else:
        r = run_client("closed", port, reqs, workdir, duration=duration, connections=connections)
    if cpu is not None:
        r["cpu_us_per_request"] = cpu.per_request(r["requests"])
    return r


class CpuMeter:
    """CPU time (user + system) spent during a phase by the server process, its children (the
    writer process) and the PostgreSQL backends, per request: where the machine's cores went.
    The machine has 2 cores shared by the client, the server(s) and the database."""

    def __init__(self, pid: int):
        import psutil

        self.server = psutil.Process(pid)
        self.start = self._sample()

    def _sample(self) -> dict[str, float]:
        import psutil

        out = {"web": 0.0, "writer": 0.0, "postgres": 0.0}
        procs = [("web", self.server)] + [("writer", c) for c in self.server.children(recursive=True)]
        procs += [("postgres", p) for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]
        for kind, proc in procs:
            try:
                t = proc.cpu_times()
            except psutil.Error:  # a process that ended between listing and reading
                continue
            out[kind] += t.user + t.system
        return out

    def per_request(self, requests: int) -> dict[str, float]:
        end = self._sample()
        n = max(1, requests)
        return {k: round((end[k] - self.start.get(k, 0.0)) / n * 1e6) for k in end}


# --- database -------------------------------------------------------------------------------
def pg_schema_url(url: str, schema: str) -> str:
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    eng.dispose()
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def drop_pg_schema(url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    eng.dispose()


def fresh_database(database_url: str | None, workdir: Path, tag: str) -> tuple[str, callable]:
    """A new empty database: a temp SQLite file, or a new schema in the given PostgreSQL."""
    if not database_url:
        return f"sqlite:///{workdir / f'{tag}.db'}", lambda: None
    schema = f"qz_bench_{tag}_{os.getpid()}"
    return pg_schema_url(database_url, schema), lambda: drop_pg_schema(database_url, schema)


def count_stored(database_url: str) -> dict:
    from sqlalchemy import func, select

    from storage.db import Database
    from storage.models import Group, Message, ProcessedEvent

    db = Database(database_url, migrate=False)
    try:
        with db.session() as s:
            return {
                "messages": s.execute(select(func.count()).select_from(Message)).scalar_one(),
                "distinct_keys": s.execute(select(func.count(func.distinct(Message.dedupe_key)))).scalar_one(),
                "group_counter_sum": s.execute(select(func.coalesce(func.sum(Group.message_count), 0))).scalar_one(),
                "processed": s.execute(select(func.count()).select_from(ProcessedEvent)).scalar_one(),
                "keys": set(s.execute(select(Message.dedupe_key)).scalars()),
            }
    finally:
        db.dispose()


# --- one run ----------------------------------------------------------------------------------
def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def _median_cpu(phases: list[dict]) -> dict[str, float]:
    keys = phases[0].get("cpu_us_per_request", {}).keys()
    return {k: _median([p["cpu_us_per_request"][k] for p in phases]) for k in keys}


def _sent_in_max_phase(m: dict, msgs: list[dict], connections: int) -> list[dict]:
    """The messages a max-rate phase may have sent (a superset: wrk thread t walks msgs[t::2])."""
    if m.get("client") == "wrk":
        k = int(m["requests"] * 0.65) + connections
        return [x for t in range(2) for x in msgs[t::2][:k]]
    return msgs[:m["requests"] + connections]


def run_pair(database_url: str | None, *, duration: float, latency_duration: float, connections: int,
             modes: list[str], pool: int, rounds: int = 3, log=print) -> dict:
    """Bare endpoint and qunzhi (per mode) on one database kind; returns the figures.

    The machine is shared and noisy, so the maximum rate is measured in ``rounds`` alternating
    rounds (bare, then each mode, again and again; all servers stay up) and each figure is the
    median of its rounds, the ratio the median of the per-round ratios."""
    workdir = Path(tempfile.mkdtemp(prefix="qz-ingest-"))
    token, aes_key = "benchToken" + uuid.uuid4().hex[:8], random_aes_key()
    gen = Generator(token, aes_key)
    out: dict = {"database": "postgresql" if database_url else "sqlite", "modes": {}, "rounds": rounds}
    servers: dict[str, Server] = {}
    cleanups = []
    try:
        bare = Server("bare", dict(os.environ), workdir)
        servers["bare"] = bare
        for mode in modes:
            url, cleanup = fresh_database(database_url, workdir, f"{mode}{uuid.uuid4().hex[:4]}")
            cleanups.append(cleanup)
            env = qunzhi_env(url, token, aes_key, QUNZHI_GROUP_COMMIT="0" if mode == "single" else "1",
                             QUNZHI_BULK_INGEST="0" if mode == "nobulk" else "1")
            servers[mode] = Server("qunzhi", env, workdir)
            servers[mode].url = url
        reqs, _ = gen.batch(2000)
        max_rate(bare.port, reqs, 1, connections, workdir)  # warm-up: bare answers any body
        state: dict[str, dict] = {}
        for mode in modes:
            warm, warm_msgs = gen.batch(500)
            w = run_client("closed", servers[mode].port, warm, workdir, connections=32)
            state[mode] = {"warm": w, "sent": list(warm_msgs), "pool": list(warm_msgs), "max": [], "acked": 0,
                           "stored_before": count_stored(servers[mode].url)["messages"]}
        bare_max: list[dict] = []
        for r in range(rounds):
            reqs, _ = gen.batch(min(pool, 20000))
            bare_max.append(max_rate(bare.port, reqs, duration, connections, workdir, server=bare))
            line = f"  round {r + 1}/{rounds}: bare {bare_max[-1]['rps']:.0f} req/s"
            for mode in modes:
                st = state[mode]
                reqs, msgs = gen.batch(pool)
                m = max_rate(servers[mode].port, reqs, duration, connections, workdir, server=servers[mode])
                if m.get("wrapped") or m.get("other"):
                    log(f"  WARNING: {m.get('other')} non-200 answers in the max-rate phase"
                        f"{' (request pool exhausted: raise --pool)' if m.get('wrapped') else ''}")
                st["max"].append(m)
                st["acked"] += m["ok"]
                st["sent"] += _sent_in_max_phase(m, msgs, connections)
                st["pool"] += msgs
                line += f", {mode} {m['ok_rps']:.0f} req/s ({m['ok_rps'] / bare_max[-1]['rps']:.2f})"
            log(line)
        if any(m["ok"] != m["requests"] for m in bare_max):
            raise RuntimeError("the bare endpoint answered something other than 200")
        bare_rps = _median([m["rps"] for m in bare_max])
        lat = half_rate_latency(bare.port, reqs[:min(pool, 20000)], bare_rps / 2, latency_duration, workdir)
        out["bare"] = {"max": {"rps": bare_rps, "rounds": [m["rps"] for m in bare_max],
                               "client": bare_max[0]["client"],
                               "cpu_us_per_request": _median_cpu(bare_max)}, "latency": lat}
        log(f"  bare: {bare_rps:.0f} req/s (median of {rounds}), at {lat['achieved']:.0f}/s p50/p90/p99 "
            f"{lat['p50_ms']:.1f}/{lat['p90_ms']:.1f}/{lat['p99_ms']:.1f} ms")

        for mode in modes:
            st, srv = state[mode], servers[mode]
            url = srv.url
            ok_rps = _median([m["ok_rps"] for m in st["max"]])
            ratio = _median([m["ok_rps"] / b["rps"] for m, b in zip(st["max"], bare_max)])
            after_max = count_stored(url)
            rate = ok_rps / 2
            n_lat = max(200, int(rate * latency_duration * 1.5) + 2 * LAT_CONNECTIONS)
            lat_reqs, lat_msgs = gen.batch(n_lat)
            lat = half_rate_latency(srv.port, lat_reqs, rate, latency_duration, workdir)
            if lat.get("wrapped"):
                log("  WARNING: latency request pool exhausted")
            after_lat = count_stored(url)
            # WeCom retries: every message of the max-rate phases again (same msgid, new nonce)
            lat_sent = lat_msgs[:lat["requests"] + LAT_CONNECTIONS] if lat["client"] == "wrk" else lat_msgs
            sent_max = st["sent"]  # the warm-up's messages and every round's
            replay_reqs = [gen.request(x) for x in sent_max + lat_sent]
            rep = run_client("closed", srv.port, replay_reqs, workdir, connections=32)
            final = count_stored(url)
            keys = {f"aibot:{x['msgid']}" for x in sent_max + lat_sent}
            pool_keys = keys | {f"aibot:{x['msgid']}" for x in st["pool"] + lat_msgs}
            check = {
                "distinct_sent": len(keys),
                "stored": final["messages"],
                "lost": len(keys - final["keys"]),
                "unexpected": len(final["keys"] - pool_keys),
                "doubled": final["messages"] - final["distinct_keys"],
                "counter_mismatch": final["group_counter_sum"] - final["messages"],
                "acked_max_phase": st["acked"],
                "stored_by_max_phase": after_max["messages"] - st["stored_before"],
                "acked_latency_phase": lat["ok"],
                "stored_by_latency_phase": after_lat["messages"] - after_max["messages"],
                "replay_statuses": rep["statuses"], "warmup_statuses": st["warm"]["statuses"],
            }
            check["ok"] = (check["lost"] == 0 and check["doubled"] == 0 and check["unexpected"] == 0
                           and check["counter_mismatch"] == 0
                           and check["stored_by_max_phase"] >= st["acked"]
                           and check["stored_by_latency_phase"] >= lat["ok"]
                           and rep["ok"] == rep["requests"])
            out["modes"][mode] = {"max": {"ok_rps": ok_rps, "ratio": ratio, "client": st["max"][0]["client"],
                                          "rounds": [m["ok_rps"] for m in st["max"]],
                                          "cpu_us_per_request": _median_cpu(st["max"])},
                                  "latency": lat, "check": check}
            log(f"  qunzhi[{mode} commit]: {ok_rps:.0f} req/s (median), ratio {ratio:.2f}, at "
                f"{lat['achieved']:.0f}/s p50/p90/p99 {lat['p50_ms']:.1f}/{lat['p90_ms']:.1f}/{lat['p99_ms']:.1f} ms;"
                f" stored {final['messages']} of {len(keys)} distinct, lost {check['lost']}, doubled "
                f"{check['doubled']} -> {'OK' if check['ok'] else 'FAILED'}")
    finally:
        for srv in servers.values():
            srv.kill()
        for cleanup in cleanups:
            cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def summarize(results: list[dict]) -> list[str]:
    lines = ["", "Ingest: AI-bot group callbacks (POST /wecom/aibot/callback, stores activity) vs bare FastAPI endpoint",
             f"{'database':<11}{'commit':<8}{'bare req/s':>11}{'qunzhi req/s':>13}{'ratio':>7}{'(goal>=0.5)':>12}"
             f"{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'(goal<=50)':>11}{'bare p99':>9}  stored once"]
    for r in results:
        b = r["bare"]
        for mode, q in r["modes"].items():
            ratio = q["max"]["ratio"]
            lat = q["latency"]
            lines.append(
                f"{r['database']:<11}{mode:<8}{b['max']['rps']:>11.0f}{q['max']['ok_rps']:>13.0f}{ratio:>7.2f}"
                f"{'met' if ratio >= 0.5 else 'MISSED':>12}{lat['p50_ms']:>8.1f}{lat['p90_ms']:>8.1f}"
                f"{lat['p99_ms']:>8.1f}{'met' if lat['p99_ms'] <= 50 else 'MISSED':>11}"
                f"{b['latency']['p99_ms']:>9.1f}  {'yes' if q['check']['ok'] else 'NO'}")
    lines += ["", "CPU per request in the max-rate phases, microseconds (median of rounds): web process / writer "
              "process / PostgreSQL backends"]
    for r in results:
        c = r["bare"]["max"].get("cpu_us_per_request") or {}
        lines.append(f"{r['database']:<11}{'bare':<8}{c.get('web', 0):>8.0f} / {c.get('writer', 0):>6.0f} / "
                     f"{c.get('postgres', 0):>6.0f}")
        for mode, q in r["modes"].items():
            c = q["max"].get("cpu_us_per_request") or {}
            lines.append(f"{r['database']:<11}{mode:<8}{c.get('web', 0):>8.0f} / {c.get('writer', 0):>6.0f} / "
                         f"{c.get('postgres', 0):>6.0f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_client"]:
        client_main(argv[1:])
        return 0
    if argv[:1] == ["_bare"]:
        ap = argparse.ArgumentParser()
        ap.add_argument("--port", type=int, required=True)
        serve_bare("127.0.0.1", ap.parse_args(argv[1:]).port)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop the servers
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", default=None, help="PostgreSQL URL (a fresh schema is created and dropped)")
    ap.add_argument("--sqlite-too", action="store_true", help="with --database-url: also run on SQLite first")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of the maximum-rate phase")
    ap.add_argument("--latency-duration", type=float, default=10.0, help="seconds of the half-rate phase")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--pool", type=int, default=0, help="pre-generated requests for the max-rate phase")
    ap.add_argument("--modes", default="group",
                    help="comma list of: group (group commit + bulk ingest), nobulk (group commit, per-event "
                         "handling), single (a transaction per request)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternating max-rate rounds (bare, qunzhi, ...); figures are medians")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.duration, a.latency_duration, a.rounds = 3.0, 3.0, 1
    pool = a.pool or int(a.duration * 5000) + 5000
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    targets = ([None] if (not a.database_url or a.sqlite_too) else []) + ([a.database_url] if a.database_url else [])
    results = []
    for url in targets:
        print(f"{'PostgreSQL' if url else 'SQLite'}: max rate {a.duration:.0f}s with {a.connections} connections, "
              f"then half rate {a.latency_duration:.0f}s", flush=True)
        results.append(run_pair(url, duration=a.duration, latency_duration=a.latency_duration,
                                connections=a.connections, modes=modes, pool=pool, rounds=a.rounds,
                                log=lambda s: print(s, flush=True)))
    for line in summarize(results):
        print(line)
    if a.json:
        print(json.dumps(results, default=str))
    ok = all(q["check"]["ok"] for r in results for q in r["modes"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
