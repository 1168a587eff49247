"""A tiny group platform for the platform-independent lifecycle tests: a real HTTP server on
127.0.0.1 (``FakeGroupServer``), a ``platforms.base.GroupOps`` sender over HTTP to it
(``HttpGroupSender``), and a registered-platform object (``platform``, name ``testgroups``) whose
capabilities a test sets: it joins ``platforms.registry`` through the ``group_platform`` fixture
(tests/fakes/fixtures.py), so the scheduler finds it exactly as it finds Feishu or DingTalk.

The server keeps groups (name, owner, members), pages ``GET /groups`` (``page_token``,
``page_size``), answers a scripted failure (``fail_next(n, status, code)``: HTTP 429 rate limited,
5xx, or 400 with a platform code such as ``"gone"``), records every call, and needs the bearer
token of the sender (an unsigned call is refused with 401).

Error mapping in the sender, as a real platform's: 429 → ``TransientSendError(rate_limited)``,
5xx / connection errors → ``TransientSendError``, 400 code ``gone`` → ``GroupGone``, any other
400 → ``PermanentSendError``.
"""
from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from platforms.base import (
    APPCHAT, Capabilities, GroupGone, GroupInfo, PermanentSendError, PlatformBase, SendResult, TransientSendError,
)

NAME = "testgroups"
TOKEN = "fake-group-token"


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    json: Any


class FakeGroupServer:
    def __init__(self):
        self.groups: dict[str, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self._script: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> "FakeGroupServer":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                fake._handle(self, "GET")

            def do_POST(self):  # noqa: N802
                fake._handle(self, "POST")

            def do_DELETE(self):  # noqa: N802
                fake._handle(self, "DELETE")

            def log_message(self, *args):  # quiet: the tests read what the fake recorded
                return None

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="fake-groups", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def fail_next(self, n: int, status: int = 429, code: str = "rate_limited") -> None:
        with self._lock:
            self._script.extend([(status, code)] * n)

    def calls_to(self, method: str, prefix: str = "") -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.startswith(prefix)]

    def add_group(self, chat_id: str, name: str, owner: str, members) -> None:
        self.groups[chat_id] = {"name": name, "owner": owner, "members": list(members)}

    # --- the API ---------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        path = parts.path.removeprefix("/api/")
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        n = int(h.headers.get("Content-Length") or 0)
        body = json.loads(h.rfile.read(n) or b"null") if n else None
        with self._lock:
            self.calls.append(Call(method, path, query, body))
            if h.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(h, 401, {"code": "unauthorized"})
            if self._script:
                status, code = self._script.pop(0)
                return self._send(h, status, {"code": code})
            status, payload = self._route(method, path, query, body)
        self._send(h, status, payload)

    def _route(self, method: str, path: str, query: dict, body: Any) -> tuple[int, dict]:
        if path == "groups" and method == "GET":
            ids = sorted(self.groups)
            start = int(query.get("page_token") or 0)
            size = int(query.get("page_size") or 2)
            page = ids[start:start + size]
            nxt = str(start + size) if start + size < len(ids) else ""
            return 200, {"items": [{"chat_id": i, "name": self.groups[i]["name"], "owner": self.groups[i]["owner"]}
                                   for i in page], "page_token": nxt}
        if path == "groups" and method == "POST":
            chat_id = f"c{next(self._ids)}"
            self.groups[chat_id] = {"name": body["name"], "owner": body["owner"],
                                    "members": list(dict.fromkeys([body["owner"], *body["members"]]))}
            return 200, {"chat_id": chat_id}
        segs = path.split("/")
        if len(segs) < 2 or segs[0] != "groups":
            return 404, {"code": "not_found"}
        g = self.groups.get(segs[1])
        if g is None:
            return 400, {"code": "gone"}
        action = segs[2] if len(segs) > 2 else ""
        if method == "DELETE" and not action:
            del self.groups[segs[1]]
            return 200, {}
        if action == "members" and method == "GET":
            return 200, {"members": g["members"]}
        if action == "notice":
            return 200, {"msg_id": f"m{next(self._ids)}"}
        if action == "remove":
            g["members"] = [m for m in g["members"] if m not in set(body["members"])]
            return 200, {}
        if action == "add":
            g["members"] += [m for m in body["members"] if m not in g["members"]]
            return 200, {}
        if action == "rename":
            g["name"] = body["name"]
            return 200, {}
        return 404, {"code": "not_found"}

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)


class HttpGroupSender:
    """``GroupOps`` over HTTP to the fake (what a Feishu or DingTalk sender does for real)."""

    def __init__(self, base_url: str, *, timeout: float = 5.0):
        self.base = base_url
        self.timeout = timeout
        self.http = requests.Session()
        self.http.trust_env = False

    def _call(self, method: str, path: str, body: Any = None, params: dict | None = None) -> dict:
        try:
            r = self.http.request(method, self.base + path, json=body, params=params, timeout=self.timeout,
                                  headers={"Authorization": f"Bearer {TOKEN}"})
        except requests.RequestException as e:
            raise TransientSendError(f"{path}: {e}") from None
        data = r.json() if r.content else {}
        if r.status_code == 429:
            raise TransientSendError(f"{path}: rate limited", http_status=429, rate_limited=True)
        if r.status_code >= 500:
            raise TransientSendError(f"{path}: HTTP {r.status_code}", http_status=r.status_code)
        if r.status_code >= 400:
            if data.get("code") == "gone":
                raise GroupGone(f"{path}: group gone", http_status=r.status_code)
            raise PermanentSendError(f"{path}: {data.get('code')}", http_status=r.status_code)
        return data

    def _ok(self, data: dict) -> SendResult:
        return SendResult(ok=True, msgid=data.get("msg_id"), raw=data)

    # outbox channel of this platform (a group notice through the outbox)
    def send_text(self, user_ids: list[str], text: str) -> SendResult:
        raise PermanentSendError("testgroups sends no direct messages")

    def group_notice(self, chat_id: str, text: str) -> SendResult:
        return self._ok(self._call("POST", f"groups/{chat_id}/notice", {"text": text}))

    def group_members(self, chat_id: str) -> set[str] | None:
        return set(self._call("GET", f"groups/{chat_id}/members")["members"])

    def group_remove(self, chat_id: str, user_ids: list[str]) -> SendResult:
        return self._ok(self._call("POST", f"groups/{chat_id}/remove", {"members": list(user_ids)}))

    def group_add(self, chat_id: str, user_ids: list[str]) -> SendResult:
        return self._ok(self._call("POST", f"groups/{chat_id}/add", {"members": list(user_ids)}))

    def group_rename(self, chat_id: str, name: str) -> SendResult:
        return self._ok(self._call("POST", f"groups/{chat_id}/rename", {"name": name}))

    def group_disband(self, chat_id: str) -> SendResult:
        return self._ok(self._call("DELETE", f"groups/{chat_id}"))

    def group_create(self, name: str, owner: str, user_ids: list[str]) -> str:
        return str(self._call("POST", "groups", {"name": name, "owner": owner, "members": list(user_ids)})["chat_id"])

    def list_groups(self) -> list[GroupInfo]:
        out, token = [], ""
        while True:
            data = self._call("GET", "groups", params={"page_token": token, "page_size": 2})
            out += [GroupInfo(i["chat_id"], i["name"], i.get("owner")) for i in data["items"]]
            token = data.get("page_token") or ""
            if not token:
                return out


FULL = Capabilities(APPCHAT, remove_members=True, rename=True, restore=True, list_members=True, purge=True,
                    create=True, list_groups=True, activity="full")


class FakeGroupPlatform(PlatformBase):
    """Registered only inside a test (fixture ``group_platform``); ``base_url`` and
    ``capabilities`` are set by the test."""
    name = NAME
    title = "测试群平台"
    inbound = "tests.fakes.fake_groups"
    channels = (NAME,)
    capabilities = FULL
    base_url = ""

    def configured(self, settings) -> bool:
        return bool(self.base_url)

    def sender(self, settings):
        return HttpGroupSender(self.base_url) if self.base_url else None

    def describe(self, settings, *, host: str, port: int) -> str:
        return f"{self.title}：测试用"


platform = FakeGroupPlatform()
router = None
