"""A fake bridge (the process that sits in personal-WeChat groups): a real HTTP server on
127.0.0.1 (random free port, own thread) that receives Qunzhi's instructions at ``/inbox``.

It checks each POST as a real bridge must (``platforms/bridge/BRIDGE.md``): the
``X-Qunzhi-Signature`` HMAC over ``timestamp + "." + body`` computed here independently, and the
timestamp window; a bad one is answered 403 and recorded in ``refused``. Every POST is recorded
in ``calls``; an accepted instruction is carried out once per ``(type, instruction_id)``
(``carried_out``), a repeat is answered 200 and counted in ``repeats``. Failures are scriptable:
``status_next(n, status)`` answers the next ``n`` POSTs with ``status`` without carrying them out.

``confirm_dissolutions(post)`` plays the bridge's side of a dissolution: for every dissolve
carried out and not yet confirmed, it signs a ``dissolve_confirmed`` event and hands it to
``post(body_bytes, headers)`` (a test client's POST to ``/bridge/events``).
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class BridgeCall:
    headers: dict[str, str]
    body: bytes
    json: Any
    status: int


class FakeBridge:
    def __init__(self, secret: str, *, tolerance: int = 300, clock: Callable[[], float] = time.time):
        self.secret = secret
        self.tolerance = tolerance
        self.clock = clock
        self.calls: list[BridgeCall] = []
        self.refused: list[BridgeCall] = []
        self.carried_out: list[dict] = []
        self.repeats = 0
        self.confirmed: set[str] = set()
        self._done: set[tuple[str, str]] = set()
        self._script: list[int] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "FakeBridge":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self):  # noqa: N802
                fake._handle(self)

            def log_message(self, *args):  # quiet: the tests read what the fake recorded
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-bridge", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        """What ``QUNZHI_BRIDGE_URL`` should be."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/inbox"

    # --- scripting and inspection ------------------------------------------------------------------
    def status_next(self, n: int, status: int = 503) -> None:
        with self._lock:
            self._script += [status] * n

    def of_type(self, kind: str) -> list[dict]:
        with self._lock:
            return [i for i in self.carried_out if i["type"] == kind]

    def confirm_dissolutions(self, post: Callable[[bytes, dict[str, str]], Any], at: datetime) -> list[Any]:
        """Confirm every dissolution carried out so far (once each), as events of time ``at``;
        returns ``post``'s answers."""
        answers = []
        for ins in self.of_type("dissolve"):
            if ins["instruction_id"] in self.confirmed:
                continue
            event = {"id": f"confirm-{next(self._ids)}", "type": "dissolve_confirmed",
                     "platform": ins["platform"], "group_id": ins["group_id"], "sender_id": "bridge",
                     "at": at.isoformat(), "instruction_id": ins["instruction_id"]}
            body = json.dumps(event, ensure_ascii=False).encode()
            ts = str(int(at.timestamp()))  # the bridge's clock agrees with Qunzhi's (simulated) one
            sig = hmac.new(self.secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            answers.append(post(body, {"X-Qunzhi-Timestamp": ts, "X-Qunzhi-Signature": sig,
                                       "Content-Type": "application/json"}))
            self.confirmed.add(ins["instruction_id"])
        return answers

    # --- the server -------------------------------------------------------------------------------
    def _valid(self, headers, body: bytes) -> bool:
        ts, sig = headers.get("X-Qunzhi-Timestamp") or "", headers.get("X-Qunzhi-Signature") or ""
        if not ts.isdigit() or abs(self.clock() - int(ts)) > self.tolerance:
            return False
        expected = hmac.new(self.secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, sig)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        headers = dict(h.headers.items())
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        with self._lock:
            status = self._script.pop(0) if self._script else None
            if h.path != "/inbox":
                status = 404
            elif status is None and not self._valid(headers, body):
                status = 403
            elif status is None and not (isinstance(data, dict) and data.get("type") and data.get("instruction_id")):
                status = 400
            call = BridgeCall(headers, body, data, status or 200)
            self.calls.append(call)
            if status == 403:
                self.refused.append(call)
            if status is None:
                key = (data["type"], data["instruction_id"])
                if key in self._done:
                    self.repeats += 1
                else:
                    self._done.add(key)
                    self.carried_out.append(data)
        answer = json.dumps({"ok": status is None}).encode()
        h.send_response(status or 200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(answer)))
        h.end_headers()
        h.wfile.write(answer)


# --- the host-guard hook (tests/fakes/host_guard.py) -------------------------------------------------
from contextlib import contextmanager  # noqa: E402


@contextmanager
def host_guard():
    """Every instruction kind of ``BridgeSender`` to this fake inbox (``QUNZHI_BRIDGE_URL``)."""
    from tests.conftest import BRIDGE_SECRET
    from tests.fakes.host_guard import HostGuard

    fake = FakeBridge(BRIDGE_SECRET).start()

    def exercise(sender) -> None:
        sender.dissolve(group_id="wechat:g1", instruction_id="i1")
        sender.send_group_text("wechat:g1", "你好", instruction_id="i2")
        sender.send_user_text("wechat:u1", "你好", instruction_id="i3")

    try:
        yield HostGuard(settings={"bridge_url": fake.url}, exercise=exercise,
                        address=("127.0.0.1", fake._server.server_address[1]))
    finally:
        fake.stop()
