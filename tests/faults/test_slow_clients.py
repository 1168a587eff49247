"""Slow clients against a real ``qunzhi serve`` with a low descriptor limit: half-sent requests
are cut off after the configured time, connections over the cap are refused at once, /healthz
keeps answering and the log stays small. Also: uvicorn's own X-Forwarded-For trust is off."""
from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ADMIN_TOKEN

NOFILE = 160
SLOW = 300  # more slow connections than the server has descriptors
TIMEOUT = 1.0  # QUNZHI_HTTP_HEADER_TIMEOUT and QUNZHI_HTTP_BODY_TIMEOUT in this test
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _low_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def _get(port: int, path: str, timeout: float, headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slow")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUNZHI_")}
    env.update(QUNZHI_DATABASE_URL=f"sqlite:///{tmp / 'q.db'}", QUNZHI_INGEST_WRITER="thread",
               QUNZHI_ADMIN_TOKEN=ADMIN_TOKEN, QUNZHI_BRIDGE_SECRET="bridge-secret-for-tests",
               QUNZHI_HTTP_HEADER_TIMEOUT=str(TIMEOUT),
               QUNZHI_HTTP_BODY_TIMEOUT=str(TIMEOUT), PYTHONPATH=str(ROOT))
    log_path = tmp / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port), "--no-scheduler"],
                                cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_low_nofile)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(port, "/healthz", 1)[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        yield port, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


HALF_HEADERS = b"POST /bridge/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
HALF_BODY = b"POST /bridge/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 500\r\n\r\n{\"type\":"


def _slow_connections(port: int) -> list[socket.socket]:
    """SLOW connections at once (non-blocking connects), each sending half a request: odd ones
    never finish their headers, even ones never finish their body."""
    import selectors

    sel = selectors.DefaultSelector()
    socks = []
    for i in range(SLOW):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sel.register(s, selectors.EVENT_WRITE, HALF_HEADERS if i % 2 else HALF_BODY)
        socks.append(s)
    deadline = time.monotonic() + 5
    pending = len(socks)
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(0.2):
            try:
                key.fileobj.send(key.data)
            except OSError:
                pass
            sel.unregister(key.fileobj)
            pending -= 1
    sel.close()
    for s in socks:
        s.setblocking(True)
    return socks


def _answer(s: socket.socket, timeout: float) -> bytes:
    s.settimeout(timeout)
    try:
        return s.recv(200) or b"<closed>"
    except ConnectionResetError:  # closed with our request unread: the kernel resets instead
        return b"<reset>"
    except socket.timeout:
        return b"<no answer>"
    except OSError as e:
        return f"<{e}>".encode()


def _answers(socks: list[socket.socket], within: float) -> list[bytes]:
    """What each socket got back within ``within`` seconds, waiting for all of them at once."""
    import selectors

    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    got: dict[socket.socket, bytes] = {}
    deadline = time.monotonic() + within
    while len(got) < len(socks) and time.monotonic() < deadline:
        for key, _ in sel.select(0.1):
            got[key.fileobj] = _answer(key.fileobj, 0.5)
            sel.unregister(key.fileobj)
    sel.close()
    return [got.get(s, b"<no answer>") for s in socks]


def test_slow_clients_do_not_starve_healthz(server):
    port, log_path = server
    size_before = log_path.stat().st_size
    socks = _slow_connections(port)
    try:
        t0 = time.monotonic()
        status = None
        while time.monotonic() - t0 < TIMEOUT + 4:
            try:
                status = _get(port, "/healthz", 1)[0]
            except OSError:
                status = None
            if status == 200:
                break
            time.sleep(0.05)
        waited = time.monotonic() - t0
        assert status == 200 and waited < TIMEOUT + 4, (status, waited)
        answers = _answers(socks, TIMEOUT + 2)
    finally:
        for s in socks:
            s.close()
    # What the server held it cut off after TIMEOUT (408), what was over the cap it refused at once
    # (503, or a reset when our half request was still unread). Connections the kernel had not
    # handed over yet (SYN retries under the flood) may still be waiting: no answer yet.
    answered = [a for a in answers if a != b"<no answer>"]
    assert all(a.startswith((b"HTTP/1.1 408", b"HTTP/1.1 503", b"<reset>")) for a in answered), \
        {a[:40] for a in answered}
    assert sum(a.startswith(b"HTTP/1.1 408") for a in answers[0::2]) >= 20  # slow bodies
    assert sum(a.startswith(b"HTTP/1.1 408") for a in answers[1::2]) >= 20  # slow headers
    assert _get(port, "/healthz", 2)[0] == 200
    grown = log_path.stat().st_size - size_before
    text = log_path.read_text(errors="replace")
    assert grown < 20_000 and text.count("Traceback") < 5, (grown, text[-3000:])


def test_keep_alive_connection_gets_a_new_deadline_per_request(server):
    port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while b'"status":"ok"' not in first:
            first += s.recv(1000)
        assert first.startswith(b"HTTP/1.1 200")
        time.sleep(TIMEOUT + 0.5)  # idle after a response: uvicorn's keep-alive (5 s) still holds it
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # then a half-sent request
        t0 = time.monotonic()
        assert _answer(s, TIMEOUT + 3).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - t0 < TIMEOUT + 2


def test_forwarded_for_from_loopback_is_not_believed(server):
    """uvicorn trusts X-Forwarded-For from 127.0.0.1 by default; with no trusted proxies set, the
    lockout must count the peer however the header varies."""
    port, _ = server
    codes = [_get(port, "/api/groups", 2, {"Authorization": f"Bearer wrong-{i}", "X-Forwarded-For": f"192.0.2.{i}"})[0]
             for i in range(8)]
    assert codes[-1] == 429, codes
