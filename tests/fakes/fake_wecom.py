"""A fake WeCom API server: a real HTTP server on 127.0.0.1 (random free port, own thread).

Implements ``gettoken``, ``message/send``, ``message/update_template_card`` and
``appchat/create|update|get|send`` under ``/cgi-bin/``, plus ``/bridge/inbox`` (a bridge's
instruction inbox). Every call is recorded (path, query, JSON body) under a lock. Failures are
scriptable: ``fail_next(n, errcode)``, ``http_status_next(n, status)``, ``delay_next(n, seconds)``
and ``expire_token()`` (the next call with the old token answers 42001). Appchat membership is
tracked so tests can assert the resulting state.

Deliveries: ``deliveries`` lists what the fake really delivered (one ``Delivery`` per accepted
``message/send``, ``message/update_template_card`` or ``appchat/send``); ``delivered(path)``
filters them. ``message/send`` honours ``enable_duplicate_check=1`` with
``duplicate_check_interval`` (seconds, default 1800, at most 14400) like WeCom: the same message
(same recipients and content) again within the interval is answered ``errcode 0`` with the first
msgid and is not delivered twice; the call is marked ``duplicate=True`` and counted in
``duplicates``. The fake's clock for that window is ``fake.clock`` (``time.monotonic``; tests may
replace it). A delayed call (``delay_next``) still delivers after the delay, as WeCom would
after the client gave up: that is the "timed out but accepted" case.

Threaded (``ThreadingHTTPServer``), HTTP/1.1 keep-alive, a deep listen backlog: it serves the
outbox benchmark's parallel workers without becoming the bottleneck.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

CORP_ID = "wx5823bf96d3bd56c7"
SECRET = "secret-for-tests"


@dataclass
class Call:
    method: str
    path: str          # without /cgi-bin/, e.g. "message/send"
    query: dict[str, str]
    json: Any
    duplicate: bool = False  # message/send dropped by the duplicate check (answered ok, not delivered)


@dataclass
class Delivery:
    path: str
    msgid: str
    json: Any


def _content_key(body: dict) -> str:
    """What WeCom compares for the duplicate check: recipients, agent and the message itself."""
    drop = {"enable_duplicate_check", "duplicate_check_interval", "enable_id_trans"}
    return json.dumps({k: v for k, v in body.items() if k not in drop}, sort_keys=True, ensure_ascii=False)


class FakeWeCom:
    def __init__(self, corp_id: str = CORP_ID, secret: str = SECRET):
        self.corp_id = corp_id
        self.secret = secret
        self.calls: list[Call] = []
        self.chats: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self.valid_tokens: set[str] = set()
        self._script: list[tuple[str, Any]] = []  # ("errcode", n) | ("status", n) | ("delay", s)
        self._msgids = itertools.count(1000)
        self.deliveries: list[Delivery] = []
        self.duplicates = 0
        self._recent: dict[str, tuple[float, str]] = {}  # content key -> (delivered at, msgid)
        self.clock = time.monotonic
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "FakeWeCom":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connections
            # Headers and body go out in two writes: without TCP_NODELAY, Nagle plus the client's
            # delayed ACK hold every answer ~40 ms on a kept-alive connection.
            disable_nagle_algorithm = True

            def do_GET(self):  # noqa: N802
                fake._handle(self, "GET")

            def do_POST(self):  # noqa: N802
                fake._handle(self, "POST")

            def log_message(self, *args):  # quiet
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # many parallel clients connecting at once
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-wecom", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def serve_in_child(self):
        """Start this fake in a child process (its own GIL); returns ``(process, base_url)``."""
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        proc = ctx.Process(target=_child, args=(self.corp_id, self.secret, q), daemon=True)
        proc.start()
        return proc, q.get(timeout=30)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """What ``settings.wecom_api_base`` should be."""
        return f"http://127.0.0.1:{self.port}/cgi-bin/"

    @property
    def bridge_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bridge/inbox"

    # --- scripting --------------------------------------------------------------------------------
    def fail_next(self, n: int, errcode: int = 45009, errmsg: str = "api freq out of limit") -> None:
        with self._lock:
            self._script += [("errcode", (errcode, errmsg))] * n

    def http_status_next(self, n: int, status: int = 503) -> None:
        with self._lock:
            self._script += [("status", status)] * n

    def delay_next(self, n: int, seconds: float) -> None:
        with self._lock:
            self._script += [("delay", seconds)] * n

    def expire_token(self) -> None:
        """Every token issued so far becomes invalid: the next call answers 42001."""
        with self._lock:
            self.valid_tokens.clear()

    # --- inspection -------------------------------------------------------------------------------
    def calls_to(self, path: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path == path]

    def delivered(self, path: str = "message/send") -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.path == path]

    def delivered_counts(self, path: str = "message/send", key=None) -> dict[Any, int]:
        """How often each message was delivered, by ``key(json)`` (default: the text or card task id)."""
        def default(j):
            return ((j.get("text") or {}).get("content") or (j.get("markdown") or {}).get("content")
                    or (j.get("template_card") or {}).get("task_id") or j.get("response_code"))
        out: dict[Any, int] = {}
        for d in self.delivered(path):
            k = (key or default)(d.json)
            out[k] = out.get(k, 0) + 1
        return out

    def members(self, chat_id: str) -> list[str]:
        with self._lock:
            return list(self.chats.get(chat_id, {}).get("userlist", []))

    # --- the server -------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        path = url.path
        for prefix in ("/cgi-bin/",):
            if path.startswith(prefix):
                path = path[len(prefix):]
        with self._lock:
            call = Call(method, path, query, body)
            call.headers = dict(h.headers.items())  # type: ignore[attr-defined]
            self.calls.append(call)
            step = self._script.pop(0) if self._script and path != "gettoken" else None
        if step and step[0] == "delay":
            time.sleep(step[1])
            step = None
        if step and step[0] == "status":
            return self._send(h, {"errcode": -1, "errmsg": "server error"}, status=step[1])
        if step and step[0] == "errcode":
            code, msg = step[1]
            return self._send(h, {"errcode": code, "errmsg": msg})
        return self._send(h, self._route(path, query, body, call))

    def _send(self, h: BaseHTTPRequestHandler, payload: dict, status: int = 200) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json; charset=utf-8")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass

    def _deliver(self, path: str, body: Any, msgid: str = "") -> None:
        with self._lock:
            self.deliveries.append(Delivery(path, msgid, body))

    def _route(self, path: str, query: dict[str, str], body: Any, call: Call | None = None) -> dict:
        if path == "/_fake/stats":  # for a fake running in another process (benchmarks/outbox.py)
            with self._lock:
                calls: dict[str, int] = {}
                for c in self.calls:
                    calls[c.path] = calls.get(c.path, 0) + 1
                dups = self.duplicates
            return {"errcode": 0, "calls": calls, "duplicates": dups,
                    "delivered": list(self.delivered_counts(query.get("path") or "message/send").values())}
        if path == "/bridge/inbox":
            return {"ok": True}
        if path == "gettoken":
            if query.get("corpid") != self.corp_id or query.get("corpsecret") != self.secret:
                return {"errcode": 40001, "errmsg": "invalid credential"}
            token = f"token-{next(self._tokens)}"
            with self._lock:
                self.valid_tokens.add(token)
            return {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}
        with self._lock:
            if query.get("access_token") not in self.valid_tokens:
                return {"errcode": 42001, "errmsg": "access_token expired"}
        body = body or {}
        if path == "message/send":
            if not body.get("touser") or "msgtype" not in body or body.get("msgtype") not in body:
                return {"errcode": 40008, "errmsg": "invalid message type"}
            key = _content_key(body) if int(body.get("enable_duplicate_check") or 0) == 1 else None
            interval = min(14400, int(body.get("duplicate_check_interval") or 1800))
            with self._lock:
                now = self.clock()
                seen = self._recent.get(key) if key else None
                if seen is not None and now - seen[0] < interval:
                    self.duplicates += 1
                    if call is not None:
                        call.duplicate = True
                    return {"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": seen[1]}
                msgid = f"msg{next(self._msgids)}"
                if key:
                    self._recent[key] = (now, msgid)
                self.deliveries.append(Delivery(path, msgid, body))
            return {"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": msgid,
                    "response_code": f"rc{next(self._msgids)}" if body["msgtype"] == "template_card" else ""}
        if path == "message/update_template_card":
            if not body.get("response_code"):
                return {"errcode": 40003, "errmsg": "invalid response_code"}
            with self._lock:  # a response code works once (WeCom: usable once, 72 hours)
                if any(d.path == path and d.json.get("response_code") == body["response_code"]
                       for d in self.deliveries):
                    return {"errcode": 40003, "errmsg": "response_code already used"}
            self._deliver(path, body)
            return {"errcode": 0, "errmsg": "ok", "invaliduser": []}
        if path == "appchat/create":
            users = list(body.get("userlist") or [])
            if len(users) < 2:
                return {"errcode": 40050, "errmsg": "chat need at least 2 members"}
            chat_id = body.get("chatid") or f"chat{next(self._msgids)}"
            with self._lock:
                if chat_id in self.chats:
                    return {"errcode": 86215, "errmsg": "chatid exists"}
                self.chats[chat_id] = {"chatid": chat_id, "name": body.get("name", ""),
                                       "owner": body.get("owner") or users[0], "userlist": users}
            return {"errcode": 0, "errmsg": "ok", "chatid": chat_id}
        if path == "appchat/update":
            with self._lock:
                chat = self.chats.get(body.get("chatid"))
                if chat is None:
                    return {"errcode": 86003, "errmsg": "chat not found"}
                if body.get("name") is not None:
                    chat["name"] = body["name"]
                if body.get("owner") is not None:
                    chat["owner"] = body["owner"]
                drop = set(body.get("del_user_list") or ())
                chat["userlist"] = [u for u in chat["userlist"] if u not in drop]
                chat["userlist"] += [u for u in (body.get("add_user_list") or ()) if u not in chat["userlist"]]
            return {"errcode": 0, "errmsg": "ok"}
        if path == "appchat/get":
            with self._lock:
                chat = self.chats.get(query.get("chatid"))
                if chat is None:
                    return {"errcode": 86003, "errmsg": "chat not found"}
                return {"errcode": 0, "errmsg": "ok", "chat_info": json.loads(json.dumps(chat))}
        if path == "appchat/send":
            with self._lock:
                if body.get("chatid") not in self.chats:
                    return {"errcode": 86003, "errmsg": "chat not found"}
            self._deliver(path, body)
            return {"errcode": 0, "errmsg": "ok"}
        return {"errcode": 404, "errmsg": f"unknown path {path}"}


def _child(corp_id: str, secret: str, q) -> None:
    fake = FakeWeCom(corp_id, secret).start()
    q.put(f"http://127.0.0.1:{fake.port}/")
    threading.Event().wait()


# --- the host-guard hook (tests/fakes/host_guard.py) -------------------------------------------------
from contextlib import contextmanager  # noqa: E402


@contextmanager
def host_guard():
    """Every call of ``WeComSender`` (messages, cards, appchat, GroupOps, a token refresh) against
    this fake."""
    from platforms.base import PermanentSendError
    from tests.fakes.host_guard import HostGuard

    fake = FakeWeCom().start()
    fake.chats["g1"] = {"chatid": "g1", "name": "群", "owner": "a", "userlist": ["a", "b"]}

    def exercise(sender) -> None:
        sender.send_text(["a"], "你好")
        sender.send_markdown(["a"], "**你好**")
        sender.send_card(["a"], {"card_type": "text_notice", "main_title": {"title": "t"}})
        sender.update_card("rc1", {"replace_name": "已投"})
        fake.expire_token()  # a refresh through gettoken
        sender.appchat_create("qzguard", "群2", "a", ["a", "b"])
        sender.appchat_update("qzguard", name="群3")
        sender.appchat_get("qzguard")
        sender.appchat_send_text("qzguard", "通知")
        sender.group_notice("g1", "通知")
        sender.group_members("g1")
        sender.group_remove("g1", ["b"])
        sender.group_add("g1", ["b"])
        sender.group_rename("g1", "新名")
        sender.group_create("群4", "a", ["b"])
        for no_api in (lambda: sender.group_disband("g1"), sender.list_groups):
            try:
                no_api()
            except PermanentSendError:
                continue
            raise AssertionError("WeCom has no disband/list API for appchat: it must refuse")

    try:
        yield HostGuard(settings={"wecom_api_base": fake.base_url}, exercise=exercise,
                        address=("127.0.0.1", fake.port))
    finally:
        fake.stop()
