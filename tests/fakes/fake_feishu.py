"""A fake Feishu / Lark open platform: a real HTTP server on 127.0.0.1 (random port, own thread).

Serves what ``platforms.feishu.sender`` calls, with Feishu's shapes and codes:

* ``POST /open-apis/auth/v3/tenant_access_token/internal`` (app id and secret checked; code 10014
  for a wrong secret), then every other call needs ``Authorization: Bearer <token>`` (99991661
  missing, 99991663 invalid: ``expire_token()`` invalidates all tokens issued so far);
* ``POST /open-apis/im/v1/messages`` (``receive_id_type``, ``uuid`` deduplicated as Feishu does),
  ``POST /open-apis/interactive/v1/card/update`` (token usable twice);
* chats: ``POST/GET /open-apis/im/v1/chats`` (create; list paginated), ``PUT/DELETE
  /open-apis/im/v1/chats/:chat_id`` (rename; disband: 232009 already dissolved, 232011 bot not in
  chat, 232017 not owner nor creator-with-scope), ``GET/POST/DELETE …/members`` (paginated; at
  most 50 ids a call, 232011/232009 as above).

Scripting: ``recover()`` drops what is still queued; ``rate_limit_next(n)`` (HTTP 429, code 99991400, ``x-ogw-ratelimit-reset``),
``http_status_next(n, status)`` (an HTML error page), ``fail_next(n, code)``; ``page_size`` caps
pages whatever the client asks. ``calls`` records method, path, query, JSON body and token; the
groups are ``chats`` (``members``, ``owner``, ``name``, ``bot_in``, ``created_by_bot``,
``dissolved``) so tests assert the resulting state.
"""
from __future__ import annotations

import itertools
from contextlib import contextmanager
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

APP_ID = "cli_a1b2c3d4e5f6"
APP_SECRET = "feishu-secret-for-tests"
PREFIX = "/open-apis"


@dataclass
class Call:
    method: str
    path: str            # without /open-apis, e.g. "/im/v1/chats/oc_1"
    query: dict[str, str]
    json: Any
    token: str | None


@dataclass
class Chat:
    chat_id: str
    name: str
    owner: str
    members: list[str] = field(default_factory=list)
    bot_in: bool = True
    created_by_bot: bool = False
    dissolved: bool = False


class FakeFeishu:
    def __init__(self, app_id: str = APP_ID, app_secret: str = APP_SECRET, *, operate_as_owner: bool = True):
        self.app_id, self.app_secret = app_id, app_secret
        self.operate_as_owner = operate_as_owner  # the app holds im:chat:operate_as_owner
        self.calls: list[Call] = []
        self.chats: dict[str, Chat] = {}
        self.messages: list[dict] = []
        self.card_updates: list[dict] = []
        self.card_tokens: dict[str, int] = {}  # token -> uses left
        self.page_size = 2
        self._uuids: dict[str, str] = {}
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._ids = itertools.count(1)
        self.valid_tokens: set[str] = set()
        self._script: list[tuple[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "FakeFeishu":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self):  # noqa: N802
                fake._handle(self, "GET")

            def do_POST(self):  # noqa: N802
                fake._handle(self, "POST")

            def do_PUT(self):  # noqa: N802
                fake._handle(self, "PUT")

            def do_DELETE(self):  # noqa: N802
                fake._handle(self, "DELETE")

            def log_message(self, *args):  # quiet: the tests read what the fake recorded
                return None

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="fake-feishu", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def domain(self) -> str:
        """What ``QUNZHI_FEISHU_DOMAIN`` should be."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # --- scripting and set-up ------------------------------------------------------------------------
    def rate_limit_next(self, n: int, reset: int = 1) -> None:
        with self._lock:
            self._script += [("rate", reset)] * n

    def http_status_next(self, n: int, status: int = 502) -> None:
        with self._lock:
            self._script += [("status", status)] * n

    def fail_next(self, n: int, code: int, msg: str = "scripted failure") -> None:
        with self._lock:
            self._script += [("code", (code, msg))] * n

    def recover(self) -> None:
        """The outage is over: scripted failures still queued are dropped."""
        with self._lock:
            self._script.clear()

    def expire_token(self) -> None:
        with self._lock:
            self.valid_tokens.clear()

    def add_chat(self, chat_id: str, name: str, owner: str, members: list[str], *, bot_in: bool = True,
                 created_by_bot: bool = False) -> Chat:
        with self._lock:
            chat = Chat(chat_id, name, owner, list(dict.fromkeys([owner, *members])), bot_in, created_by_bot)
            self.chats[chat_id] = chat
            return chat

    def issue_card_token(self) -> str:
        token = f"c-{next(self._ids):08d}"
        with self._lock:
            self.card_tokens[token] = 2  # Feishu: valid 30 minutes, two updates
        return token

    def calls_to(self, method: str, path_start: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and c.path.startswith(path_start)]

    # --- the API ------------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        auth = h.headers.get("Authorization") or ""
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        path = url.path[len(PREFIX):] if url.path.startswith(PREFIX) else url.path
        with self._lock:
            self.calls.append(Call(method, path, query, body, token))
            step = self._script.pop(0) if self._script and path != "/auth/v3/tenant_access_token/internal" else None
        if step is not None:
            kind, arg = step
            if kind == "rate":
                return self._send(h, 429, {"code": 99991400, "msg": "request trigger frequency limit"},
                                  {"x-ogw-ratelimit-limit": "50", "x-ogw-ratelimit-reset": str(arg)})
            if kind == "status":
                return self._send_raw(h, arg, b"<html>bad gateway</html>", "text/html")
            return self._send(h, 400, {"code": arg[0], "msg": arg[1]})
        if path == "/auth/v3/tenant_access_token/internal" and method == "POST":
            if not isinstance(body, dict) or body.get("app_id") != self.app_id or body.get("app_secret") != self.app_secret:
                return self._send(h, 400, {"code": 10014, "msg": "app secret invalid"})
            tok = f"t-{next(self._tokens):06d}"
            with self._lock:
                self.valid_tokens.add(tok)
            return self._send(h, 200, {"code": 0, "msg": "ok", "tenant_access_token": tok, "expire": 7200})
        if token is None:
            return self._send(h, 400, {"code": 99991661, "msg": "Missing access token for authorization"})
        with self._lock:
            valid = token in self.valid_tokens
        if not valid:
            return self._send(h, 400, {"code": 99991663, "msg": "Invalid access token for authorization"})
        with self._lock:
            status, answer = self._api(method, path, query, body or {})
        return self._send(h, status, answer)

    def _api(self, method: str, path: str, q: dict, body: dict) -> tuple[int, dict]:
        parts = path.strip("/").split("/")  # im v1 chats <id> members
        ok = lambda data=None: (200, {"code": 0, "msg": "success", "data": data or {}})  # noqa: E731
        err = lambda code, msg: (400, {"code": code, "msg": msg})  # noqa: E731
        if path == "/im/v1/messages" and method == "POST":
            if q.get("receive_id_type") not in ("open_id", "union_id", "user_id", "chat_id", "email"):
                return err(230001, "invalid receive_id_type")
            uuid = body.get("uuid")
            if uuid and uuid in self._uuids:
                return ok({"message_id": self._uuids[uuid]})
            if q["receive_id_type"] == "chat_id":
                chat = self.chats.get(body.get("receive_id"))
                if chat is None or chat.dissolved:
                    return err(230002, "The bot can not be outside the group.")
                if not chat.bot_in:
                    return err(230002, "The bot can not be outside the group.")
            mid = f"om_{next(self._ids):06d}"
            if uuid:
                self._uuids[uuid] = mid
            self.messages.append({**body, "receive_id_type": q["receive_id_type"], "message_id": mid})
            return ok({"message_id": mid})
        if path == "/interactive/v1/card/update" and method == "POST":
            left = self.card_tokens.get(body.get("token"), 0)
            if left <= 0:
                return err(200740, "token invalid or expired")
            self.card_tokens[body["token"]] = left - 1
            self.card_updates.append(body)
            return ok()
        if parts[:3] != ["im", "v1", "chats"]:
            return 404, {"code": 404, "msg": "not found"}
        if len(parts) == 3 and method == "POST":
            cid = f"oc_{next(self._ids):06d}"
            owner = body.get("owner_id")
            members = list(body.get("user_id_list") or [])
            if len(members) > 50:
                return err(232001, "too many users")
            if q.get("uuid") and q["uuid"] in self._uuids:
                return ok({"chat_id": self._uuids[q["uuid"]]})
            self.chats[cid] = Chat(cid, body.get("name", ""), owner or "bot", list(dict.fromkeys([owner, *members]))
                                   if owner else members, True, True)
            if q.get("uuid"):
                self._uuids[q["uuid"]] = cid
            return ok({"chat_id": cid, "name": body.get("name"), "owner_id": owner})
        if len(parts) == 3 and method == "GET":
            chats = [c for c in self.chats.values() if c.bot_in and not c.dissolved]
            return ok(self._page(q, [{"chat_id": c.chat_id, "name": c.name, "owner_id": c.owner,
                                      "owner_id_type": "open_id"} for c in chats]))
        chat = self.chats.get(parts[3]) if len(parts) > 3 else None
        if chat is None:
            return err(232006, "Your request specifies a chat_id which is invalid.")
        if chat.dissolved:
            return err(232009, "Your request specifies a chat which has already been dissolved.")
        if not chat.bot_in:
            return err(232011, "Operator can NOT be out of the chat.")
        owner_level = chat.owner == "bot" or (chat.created_by_bot and self.operate_as_owner)
        if len(parts) == 4:
            if method == "DELETE":
                if not owner_level:
                    return err(232017, "No Permission: If the operator is NOT owner or creator with the scope, "
                                       "the operator can NOT complete the request.")
                chat.dissolved = True
                return ok()
            if method == "PUT":
                if not owner_level:
                    return err(232002, "No Permission: Only chat owner or admin can edit chat information.")
                if "name" in body:
                    chat.name = body["name"]
                return ok()
            if method == "GET":
                return ok({"name": chat.name, "owner_id": chat.owner})
        if len(parts) == 5 and parts[4] == "members":
            if method == "GET":
                return ok(self._page(q, [{"member_id_type": q.get("member_id_type"), "member_id": m, "name": m}
                                         for m in chat.members]))
            ids = list(body.get("id_list") or [])
            if len(ids) > 50:
                return err(232001, "at most 50 users a call")
            if not owner_level:
                return err(232017, "No Permission: not owner or creator with the scope.")
            if method == "POST":
                chat.members += [i for i in ids if i not in chat.members]
                return ok({"invalid_id_list": []})
            if method == "DELETE":
                chat.members = [m for m in chat.members if m not in ids or m == chat.owner]
                return ok({"invalid_id_list": []})
        return 404, {"code": 404, "msg": "not found"}

    def _page(self, q: dict, items: list[dict]) -> dict:
        size = min(int(q.get("page_size") or 20), self.page_size)
        start = int(q.get("page_token") or 0)
        page = items[start:start + size]
        more = start + size < len(items)
        return {"items": page, "has_more": more, "page_token": str(start + size) if more else ""}

    @staticmethod
    def _send(h, status: int, body: dict, headers: dict | None = None) -> None:
        FakeFeishu._send_raw(h, status, json.dumps(body, ensure_ascii=False).encode(), "application/json; charset=utf-8",
                             headers)

    @staticmethod
    def _send_raw(h, status: int, data: bytes, ctype: str, headers: dict | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)


@contextmanager
def host_guard():
    """Every call of ``FeishuSender`` (token, messages, cards, every GroupOps method) against this
    fake (tests/security/test_platform_hosts.py)."""
    from tests.fakes.host_guard import HostGuard

    fake = FakeFeishu().start()
    fake.add_chat("oc_g1", "群", "ou_a", ["ou_b"], created_by_bot=True)

    def exercise(sender) -> None:
        sender.send_text(["feishu:ou_a"], "你好")
        sender.send_markdown(["feishu:ou_a"], "**你好**")
        sender.send_card(["feishu:ou_a"], {"elements": []})
        fake.expire_token()  # a refresh through tenant_access_token
        sender.group_notice("oc_g1", "通知")
        sender.group_members("oc_g1")
        sender.group_remove("oc_g1", ["ou_b"])
        sender.group_add("oc_g1", ["ou_b"])
        sender.group_rename("oc_g1", "新名")
        created = sender.group_create("群2", "ou_a", ["ou_b"])
        sender.list_groups()
        sender.group_disband(created)

    try:
        yield HostGuard(settings=dict(feishu_app_id=APP_ID, feishu_app_secret=APP_SECRET,
                                      feishu_encrypt_key="k", feishu_verification_token="t",
                                      feishu_domain=fake.domain),
                        exercise=exercise, address=("127.0.0.1", fake._server.server_address[1]))
    finally:
        fake.stop()
