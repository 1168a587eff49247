"""The HTTP server behind ``qunzhi serve``: uvicorn with guards against slow clients.

uvicorn 0.34 gives a connection all the time it wants to send a request (its keep-alive timer
only starts after a response), so thousands of half-sent requests could hold every file
descriptor; at the limit ``/healthz`` stopped answering and asyncio logged the same accept
error thousands of times a second. Here:

* ``GuardedH11Protocol`` gives each request ``QUNZHI_HTTP_HEADER_TIMEOUT`` seconds for its
  headers (from the connection or from its first byte after a keep-alive pause) and then
  ``QUNZHI_HTTP_BODY_TIMEOUT`` seconds for its body; too slow gets 408 and the connection is closed.
* At most ``max_connections`` connections are open at once (``QUNZHI_HTTP_MAX_CONNECTIONS``, and
  never more than half the process's descriptor limit, so the database, the writer and the log
  keep theirs); one more is answered 503 and closed at once instead of holding a descriptor.
* ``RepeatFilter`` lets through a few identical log records a minute and counts the rest.
* uvicorn's own X-Forwarded-For handling is off: the client address is decided by
  ``bot.dashboard.auth.client_address`` from ``QUNZHI_TRUSTED_PROXIES`` only.
"""
from __future__ import annotations

import asyncio
import logging
import re
import resource
import threading
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from config.settings import Settings

log = logging.getLogger("qunzhi.server")


def _raw_response(status: str, text: str) -> bytes:
    body = text.encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


TIMEOUT_RESPONSE = _raw_response("408 Request Timeout", "请求超时，请重新发送")
BUSY_RESPONSE = _raw_response("503 Service Unavailable", "服务繁忙，请稍后再试")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for receiving each request and a cap on connections."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000

    _deadline: asyncio.TimerHandle | None = None
    _phase: str | None = None  # "headers" | "body" while a request is being received
    _refused = False

    def connection_made(self, transport) -> None:  # type: ignore[override]
        state = self.server_state
        # tasks too: a request whose client went away may still be running
        if len(state.connections) >= self.max_connections or len(state.tasks) >= self.max_connections:
            self._refused = True
            log.warning("refusing a connection: %d connections open and %d requests running, the limit is %d",
                        len(state.connections), len(state.tasks), self.max_connections)
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        super().connection_made(transport)
        self._arm("headers")

    def connection_lost(self, exc) -> None:
        if self._refused:
            return
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._phase is None and self.conn.their_state is h11.IDLE:
            self._arm("headers")  # the first byte of a new request on a kept-alive connection
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    # --- the deadline -------------------------------------------------------------------------
    def _follow(self) -> None:
        """Move the deadline with the request: headers, then body, then none until the next one."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self._phase != "body":
                self._arm("body")
        elif state is not h11.IDLE:  # DONE, MUST_CLOSE, CLOSED, ERROR: nothing more to wait for
            self._disarm()
        # IDLE: still receiving the headers (deadline armed), or between requests, where
        # uvicorn's keep-alive timer closes an idle connection.

    def _arm(self, phase: str) -> None:
        self._disarm()
        self._phase = phase
        timeout = self.header_timeout if phase == "headers" else self.body_timeout
        self._deadline = self.loop.call_later(timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._phase = None, None

    def _expired(self) -> None:
        phase = self._phase
        self._deadline, self._phase = None, None
        if self.transport is None or self.transport.is_closing():
            return
        timeout = self.header_timeout if phase == "headers" else self.body_timeout
        log.warning("closing a slow connection: request %s not received within %s s", phase, timeout)
        cycle = self.cycle if phase == "body" else None  # in the headers phase it is the previous request's
        if cycle is None or not cycle.response_started:
            self.transport.write(TIMEOUT_RESPONSE)
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application's receive() now answers http.disconnect
            cycle.message_event.set()
        self.transport.close()


def guarded_protocol(settings: Settings, max_connections: int) -> type[GuardedH11Protocol]:
    return type("QunzhiH11Protocol", (GuardedH11Protocol,), {
        "header_timeout": settings.http_header_timeout, "body_timeout": settings.http_body_timeout,
        "max_connections": max_connections,
    })


def _nofile() -> int | None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def max_connections(settings: Settings) -> int:
    """The configured cap, but never more than half the descriptor limit (at least 8)."""
    soft = _nofile()
    return settings.http_max_connections if soft is None else max(8, min(settings.http_max_connections, soft // 2))


def accept_backlog(limit: int) -> int:
    """asyncio accepts up to ``backlog`` sockets per turn of the loop, before a refused one is
    closed: a quarter of the descriptors left beside the connections, so a flood never makes
    accept() fail (uvicorn's default is 2048)."""
    soft = _nofile()
    return 2048 if soft is None else max(16, min(2048, (soft - limit) // 4))


# --- logging -----------------------------------------------------------------------------------
_VARYING = re.compile(r"0x[0-9a-fA-F]+|\d+")


class RepeatFilter(logging.Filter):
    """Let ``burst`` identical records per ``window`` seconds through; count the rest.

    Records are the same when logger, level, message (its template, or its first line with
    numbers and addresses masked) and exception type are. The first record let through after
    a suppression says how many were left out.
    """

    def __init__(self, burst: int = 5, window: float = 60.0, max_keys: int = 1000, clock=time.monotonic):
        super().__init__()
        self.burst, self.window, self.max_keys, self.clock = burst, window, max_keys, clock
        self._seen: dict[tuple, list] = {}  # key -> [window start, passed, suppressed]
        self._lock = threading.Lock()

    def _key(self, record: logging.LogRecord) -> tuple:
        text = record.msg if isinstance(record.msg, str) else str(record.msg)
        if not record.args:
            text = text.split("\n", 1)[0]
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else None
        return record.name, record.levelno, _VARYING.sub("#", text)[:300], exc

    def filter(self, record: logging.LogRecord) -> bool:
        key, now = self._key(record), self.clock()
        with self._lock:
            entry = self._seen.get(key)
            if entry is None or now - entry[0] >= self.window:
                suppressed = entry[2] if entry else 0
                if len(self._seen) >= self.max_keys:
                    self._seen.clear()
                self._seen[key] = [now, 1, 0]
                if suppressed:
                    record.msg = f"{record.msg} [{suppressed} identical messages suppressed in the last " \
                                 f"{self.window:.0f} s]"
                return True
            if entry[1] < self.burst:
                entry[1] += 1
                return True
            entry[2] += 1
            return False


def install_repeat_filter() -> None:
    """One filter per handler of the root logger and of uvicorn's loggers."""
    for name in (None, "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RepeatFilter) for f in handler.filters):
                handler.addFilter(RepeatFilter())


def run(app, *, host: str, port: int, settings: Settings) -> None:
    import uvicorn

    limit = max_connections(settings)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False, proxy_headers=False,
                            http=guarded_protocol(settings, limit), backlog=accept_backlog(limit))
    install_repeat_filter()  # after uvicorn.Config: it sets up uvicorn's handlers
    log.info("serving with at most %d connections, %s s for request headers, %s s for the body",
             limit, settings.http_header_timeout, settings.http_body_timeout)
    uvicorn.Server(config).run()
