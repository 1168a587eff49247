"""A fake of the WeCom AI bot's ``response_url`` (智能机器人 主动回复消息, document 101138): a real
HTTP server on 127.0.0.1 (random free port, own thread).

``issue()`` hands out a response URL like the one a callback carries
(``.../cgi-bin/aibot/response?response_code=...``). Like WeCom's, each URL accepts **one** POST
of ``{"msgtype": "markdown", "markdown": {"content": ...}}`` or ``{"msgtype": "template_card",
"template_card": {...}}`` and only within an hour of being issued (``fake.clock``, seconds;
tests may replace it). A second use or a late one is answered with a non-zero errcode (the code
itself is this fake's choice, WeCom's is not documented) and delivers nothing. ``status_next(n,
status)`` answers the next ``n`` POSTs with an HTTP error without using the URL up;
``delay_next(n, seconds)`` answers late but uses the URL (a timeout that was accepted).
``delivered`` lists what reached the chat.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

TTL = 3600.0
USED_OR_EXPIRED = 40003  # this fake's errcode for a response_code used up or past its hour


@dataclass
class Delivery:
    response_code: str
    json: Any


class FakeAibot:
    abandoned = 0  # answers the client no longer waited for

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.calls: list[tuple[str, Any]] = []
        self.delivered: list[Delivery] = []
        self.refused: list[tuple[str, int]] = []
        self._issued: dict[str, float] = {}
        self._used: set[str] = set()
        self._script: list[int] = []
        self._delays: list[float] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> "FakeAibot":
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
        threading.Thread(target=self._server.serve_forever, name="fake-aibot", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def issue(self) -> str:
        """A fresh response URL (as a callback would carry it), valid for an hour from now."""
        code = f"RC{next(self._ids)}"
        with self._lock:
            self._issued[code] = self.clock()
        return f"http://127.0.0.1:{self._server.server_address[1]}/cgi-bin/aibot/response?response_code={code}"

    def status_next(self, n: int, status: int = 503) -> None:
        with self._lock:
            self._script += [status] * n

    def delay_next(self, n: int, seconds: float) -> None:
        """The next ``n`` POSTs answer late, but are carried out (the client may have given up)."""
        with self._lock:
            self._delays += [seconds] * n

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            delay = self._delays.pop(0) if self._delays else 0.0
        url = urlsplit(h.path)
        code = (parse_qs(url.query).get("response_code") or [""])[0]
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        status, answer = 200, {"errcode": 0, "errmsg": "ok"}
        with self._lock:
            self.calls.append((code, body))
            issued = self._issued.get(code)
            if self._script:
                status, answer = self._script.pop(0), {"errcode": -1, "errmsg": "system busy"}
            elif url.path != "/cgi-bin/aibot/response" or issued is None:
                answer = {"errcode": USED_OR_EXPIRED, "errmsg": "invalid response_code"}
            elif code in self._used or self.clock() - issued > TTL:
                answer = {"errcode": USED_OR_EXPIRED, "errmsg": "response_code used or expired"}
            elif not isinstance(body, dict) or body.get("msgtype") not in ("markdown", "template_card") \
                    or not isinstance(body.get(body["msgtype"]), dict):
                answer = {"errcode": 40008, "errmsg": "invalid message type"}
            else:
                self._used.add(code)
                self.delivered.append(Delivery(code, body))
            if answer["errcode"] and status == 200:
                self.refused.append((code, answer["errcode"]))
        time.sleep(delay)
        data = json.dumps(answer).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        try:
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            self.abandoned += 1


# --- the host-guard hook (tests/fakes/host_guard.py) -------------------------------------------------
from contextlib import contextmanager  # noqa: E402


@contextmanager
def host_guard():
    """The AI bot answers through each callback's ``response_url`` (its "configured" host): every
    kind of answer to URLs this fake issued."""
    from tests.fakes.host_guard import HostGuard

    fake = FakeAibot().start()

    def exercise(sender) -> None:
        sender.respond_text(fake.issue(), "你好")
        sender.respond_markdown(fake.issue(), "**你好**")
        sender.respond_card(fake.issue(), {"card_type": "text_notice", "main_title": {"title": "t"}})

    try:
        yield HostGuard(settings={}, exercise=exercise, address=("127.0.0.1", fake._server.server_address[1]))
    finally:
        fake.stop()
