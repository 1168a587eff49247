"""A fake DingTalk API server on 127.0.0.1 (random port, own thread): both hosts in one (the new
OpenAPI ``/v1.0/...`` and the classic ``/topapi/...``), so tests set ``QUNZHI_DINGTALK_API_BASE``
and ``QUNZHI_DINGTALK_OAPI_BASE`` to ``fake.url``.

* ``POST /v1.0/oauth2/accessToken`` checks appKey/appSecret; every other call checks the token
  (header ``x-acs-dingtalk-access-token`` on /v1.0, ``?access_token=`` on /topapi) and answers
  as DingTalk does when it is wrong (HTTP 401 ``InvalidAuthentication`` / errcode 40014; an
  expired one 42001 after ``expire_token()``).
* Scene groups are tracked (``groups``: id → title, owner, members, scene, disbanded); an
  ordinary group (``add_group(..., scene=False)``) refuses the scene-group calls; creating one
  with an owner outside the app's visible range (``visible``) answers 群主不在应用可见性内.
* Pages: ``member/get`` by cursor (``size``), ``activeGroups`` by ``pageNumber``/``pageSize``,
  ``orgGroupInfos`` by ``pageStart``/``pageSize``.
* Rate limits: ``throttle_next(n)`` answers the next n calls with DingTalk's limit (classic
  errcode 90018, new API HTTP 429 ``Throttling.Api``); ``fail_next(n, status)`` HTTP errors; ``recover()`` drops what is still queued.
* Stream gateway: ``POST /v1.0/gateway/connections/open`` (checks clientId/clientSecret) answers
  ``{"endpoint", "ticket"}`` for the websocket given by ``stream_endpoint``.

Every call is recorded in ``calls`` (method, path, query, headers, JSON body).
"""
from __future__ import annotations

import itertools
import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

APP_KEY = "dingappkey-for-tests"
APP_SECRET = "dingtalk-app-secret-for-tests-0123456789"
OWNER_NOT_VISIBLE = 4000012  # the fake's errcode for 群主不在应用可见性内 (the errmsg is what DingTalk says)


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeGroup:
    title: str
    owner: str
    members: set[str]
    scene: bool = True
    disbanded: bool = False


class FakeDingTalk:
    def __init__(self, app_key: str = APP_KEY, app_secret: str = APP_SECRET):
        self.app_key, self.app_secret = app_key, app_secret
        self.calls: list[Call] = []
        self.groups: dict[str, FakeGroup] = {}
        self.visible: set[str] | None = None  # None: everyone is in the app's visible range
        self.cards: dict[str, dict] = {}      # cardBizId → {"data": ..., "updates": n, "receiver"}
        self.messages: list[dict] = []        # delivered robot messages
        self.active: dict[str, list[dict]] = {}  # statDate → activeGroups rows
        self.org_groups: list[dict] = []      # orgGroupInfos items
        self.stream_endpoint: str | None = None
        self.valid_tokens: set[str] = set()
        self.expired_tokens: set[str] = set()
        self._tokens = itertools.count(1)
        self._ids = itertools.count(1)
        self._script: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- control ----------------------------------------------------------------------------------
    def start(self) -> "FakeDingTalk":
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

            def log_message(self, *args):  # quiet: the tests read what the fake recorded
                return None

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="fake-dingtalk", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_group(self, cid: str, title: str, owner: str, members: set[str], *, scene: bool = True) -> None:
        self.groups[cid] = FakeGroup(title, owner, set(members) | {owner}, scene)

    def throttle_next(self, n: int = 1) -> None:
        with self._lock:
            self._script.extend([("throttle", None)] * n)

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        with self._lock:
            self._script.extend([("status", status)] * n)

    def recover(self) -> None:
        """The outage is over: scripted failures still queued are dropped."""
        with self._lock:
            self._script.clear()

    def expire_token(self) -> None:
        with self._lock:
            self.expired_tokens |= self.valid_tokens
            self.valid_tokens.clear()

    def called(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    # --- HTTP -----------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self.calls.append(Call(method, parts.path, query, body, {k.lower(): v for k, v in h.headers.items()}))
            step = self._script.pop(0) if self._script and parts.path != "/v1.0/oauth2/accessToken" else None
        classic = parts.path.startswith("/topapi/")
        if step is not None and step[0] == "status":
            return self._send(h, step[1], {"code": "ServiceUnavailable", "message": "fake outage"})
        if step is not None and step[0] == "throttle":
            if classic:
                return self._send(h, 200, {"errcode": 90018, "errmsg": "当前企业调用该接口的QPS超过限制"})
            return self._send(h, 429, {"code": "Throttling.Api", "message": "API调用频率超过限制"})
        if parts.path == "/v1.0/oauth2/accessToken":
            return self._token(h, body or {})
        if parts.path == "/v1.0/gateway/connections/open":
            return self._gateway(h, body or {})
        if parts.path == "/robot/sendBySession":  # a message's sessionWebhook (its session is the credential)
            if query.get("session") != "session-for-tests":
                return self._send(h, 200, {"errcode": 300001, "errmsg": "session不存在"})
            self.messages.append({"session": True, "body": body})
            return self._send(h, 200, {"errcode": 0, "errmsg": "ok"})
        token = query.get("access_token") if classic else h.headers.get("x-acs-dingtalk-access-token")
        with self._lock:
            ok, expired = token in self.valid_tokens, token in self.expired_tokens
        if not ok:
            if classic:
                return self._send(h, 200, {"errcode": 42001 if expired else 40014,
                                           "errmsg": "access_token超时" if expired else "不合法的access_token"})
            return self._send(h, 401, {"code": "InvalidAuthentication", "message": "不合法的access_token"})
        handler = ROUTES.get((method, parts.path))
        if handler is None:
            return self._send(h, 404, {"code": "NotFound", "message": "no such API in the fake"})
        status, answer = handler(self, body if isinstance(body, dict) else {}, query)
        return self._send(h, status, answer)

    @staticmethod
    def _send(h, status: int, payload: dict) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _token(self, h, body: dict) -> None:
        if body.get("appKey") != self.app_key or body.get("appSecret") != self.app_secret:
            return self._send(h, 400, {"code": "invalidClientIdOrSecret", "message": "无效的clientId或者clientSecret"})
        token = f"dt-token-{next(self._tokens)}"
        with self._lock:
            self.valid_tokens.add(token)
        return self._send(h, 200, {"accessToken": token, "expireIn": 7200})

    def _gateway(self, h, body: dict) -> None:
        if body.get("clientId") != self.app_key or body.get("clientSecret") != self.app_secret:
            return self._send(h, 401, {"code": "InvalidAuthentication", "message": "clientId or secret wrong"})
        return self._send(h, 200, {"endpoint": self.stream_endpoint, "ticket": "ticket-for-tests"})

    # --- APIs -------------------------------------------------------------------------------------
    def _scene(self, cid: str | None) -> tuple[FakeGroup | None, dict | None]:
        g = self.groups.get(cid or "")
        if g is None or g.disbanded:
            return None, {"errcode": 4000003, "errmsg": "群会话不存在"}
        if not g.scene:
            return None, {"errcode": 4000009, "errmsg": "非场景群，不支持此操作"}
        return g, None

    def _batch_send(self, body, q):
        self.messages.append({"to": body.get("userIds"), "key": body.get("msgKey"),
                              "param": json.loads(body.get("msgParam") or "{}")})
        return 200, {"processQueryKey": f"pqk-{next(self._ids)}"}

    def _group_send(self, body, q):
        g = self.groups.get(body.get("openConversationId") or "")
        if g is None or g.disbanded:
            return 400, {"code": "resource.not.found", "message": "群会话不存在"}
        self.messages.append({"group": body.get("openConversationId"), "key": body.get("msgKey"),
                              "param": json.loads(body.get("msgParam") or "{}")})
        return 200, {"processQueryKey": f"pqk-{next(self._ids)}"}

    def _card_send(self, body, q):
        biz = body.get("cardBizId")
        if not biz or not body.get("cardData"):
            return 400, {"code": "MissingParameter", "message": "cardBizId/cardData"}
        self.cards[biz] = {"data": json.loads(body["cardData"]), "updates": 0,
                           "receiver": json.loads(body.get("singleChatReceiver") or "{}")}
        return 200, {"success": True, "result": {"processQueryKey": f"pqk-{next(self._ids)}"}}

    def _card_update(self, body, q):
        card = self.cards.get(body.get("cardBizId") or "")
        if card is None:
            return 400, {"code": "card.not.found", "message": "卡片不存在"}
        card["data"] = json.loads(body.get("cardData") or "{}")
        card["updates"] += 1
        return 200, {"success": True}

    def _create(self, body, q):
        owner = body.get("owner_user_id")
        if not body.get("template_id"):
            return 200, {"errcode": 40035, "errmsg": "缺少参数 template_id"}
        if self.visible is not None and owner not in self.visible:
            return 200, {"errcode": OWNER_NOT_VISIBLE, "errmsg": "群主不在应用可见性内"}
        cid = f"cidFake{next(self._ids)}=="
        members = {u for u in (body.get("user_ids") or "").split(",") if u}
        self.add_group(cid, body.get("title") or "", owner, members)
        return 200, {"errcode": 0, "errmsg": "ok", "result": {"open_conversation_id": cid, "chat_id": "chat" + cid}}

    def _update(self, body, q):
        g, err = self._scene(body.get("open_conversation_id"))
        if err:
            return 200, err
        if body.get("title"):
            g.title = body["title"]
        return 200, {"errcode": 0, "errmsg": "ok", "result": {"open_conversation_id": body["open_conversation_id"]}}

    @staticmethod
    def _members(add: bool):
        def handler(self, body, q):
            g, err = self._scene(body.get("open_conversation_id"))
            if err:
                return 200, err
            ids = {u for u in (body.get("user_ids") or "").split(",") if u}
            if add:
                g.members |= ids
            else:
                if g.owner in ids:
                    return 200, {"errcode": 4000010, "errmsg": "不能移除群主"}
                g.members -= ids
            return 200, {"errcode": 0, "errmsg": "ok"}
        return handler

    def _member_get(self, body, q):
        g, err = self._scene(body.get("open_conversation_id"))
        if err:
            return 200, err
        size = max(1, min(1000, int(body.get("size") or 100)))
        cursor = int(body.get("cursor") or 0)
        ids = sorted(g.members)
        page = ids[cursor:cursor + size]
        more = cursor + size < len(ids)
        return 200, {"errcode": 0, "errmsg": "ok", "result": {"has_more": more, "next_cursor": cursor + size,
                                                             "member_user_ids": page}}

    def _disband(self, body, q):
        g = self.groups.get(body.get("openConversationId") or "")
        if g is None or g.disbanded:
            return 400, {"code": "invalidParameter.openConversationId", "message": "群会话不存在"}
        if not g.scene:
            return 400, {"code": "invalidParameter.notSceneGroup", "message": "非场景群，不支持解散"}
        g.disbanded = True
        return 200, {"success": True}

    def _active_groups(self, body, q):
        rows = self.active.get(q.get("statDate", ""), [])
        size, page = int(q.get("pageSize") or 100), int(q.get("pageNumber") or 1)
        return 200, {"data": rows[(page - 1) * size:page * size], "totalCount": len(rows)}

    def _org_groups(self, body, q):
        if not q.get("operatorUserId"):
            return 400, {"code": "MissingoperatorUserId", "message": "operatorUserId is mandatory"}
        size, start = int(q.get("pageSize") or 100), int(q.get("pageStart") or 0)
        items = self.org_groups[start:start + size]
        return 200, {"items": items, "itemCount": len(items), "totalCount": len(self.org_groups)}


ROUTES = {
    ("POST", "/v1.0/robot/oToMessages/batchSend"): FakeDingTalk._batch_send,
    ("POST", "/v1.0/robot/groupMessages/send"): FakeDingTalk._group_send,
    ("POST", "/v1.0/im/v1.0/robot/interactiveCards/send"): FakeDingTalk._card_send,
    ("PUT", "/v1.0/im/robots/interactiveCards"): FakeDingTalk._card_update,
    ("POST", "/topapi/im/chat/scenegroup/create"): FakeDingTalk._create,
    ("POST", "/topapi/im/chat/scenegroup/update"): FakeDingTalk._update,
    ("POST", "/topapi/im/chat/scenegroup/member/add"): FakeDingTalk._members(True),
    ("POST", "/topapi/im/chat/scenegroup/member/delete"): FakeDingTalk._members(False),
    ("POST", "/topapi/im/chat/scenegroup/member/get"): FakeDingTalk._member_get,
    ("POST", "/v1.0/im/chat/scenegroup/disband"): FakeDingTalk._disband,
    ("GET", "/v1.0/exclusive/data/activeGroups"): FakeDingTalk._active_groups,
    ("GET", "/v1.0/exclusive/securities/orgGroupInfos"): FakeDingTalk._org_groups,
}


class StreamGateway:
    """The websocket half of DingTalk's Stream gateway (``websockets``' threaded server): checks
    the ticket the HTTP half gave out, pushes CALLBACK frames as DingTalk does and collects the
    client's acks."""

    def __init__(self, ticket: str = "ticket-for-tests"):
        import queue

        self.ticket = ticket
        self.acks: "queue.Queue[dict]" = queue.Queue()
        self.connected = threading.Event()
        self.refused = 0
        self._conn = None
        self._server = None
        self._ids = itertools.count(1)

    def start(self) -> "StreamGateway":
        from websockets.sync.server import serve

        self._server = serve(self._handler, "127.0.0.1", 0)
        threading.Thread(target=self._server.serve_forever, name="fake-dingtalk-stream", daemon=True).start()
        return self

    @property
    def endpoint(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}/connect"

    def _handler(self, ws) -> None:
        q = parse_qs(urlsplit(ws.request.path).query)
        if q.get("ticket") != [self.ticket]:
            self.refused += 1
            ws.close(1008, "bad ticket")
            return
        self._conn = ws
        self.connected.set()
        for raw in ws:
            self.acks.put(json.loads(raw))

    def push(self, topic: str, data: dict, timeout: float = 15.0) -> dict:
        """Send one CALLBACK frame and wait for its ack."""
        if not self.connected.wait(timeout):
            raise AssertionError("the stream client never connected")
        mid = f"msg-{next(self._ids)}"
        self._conn.send(json.dumps({"specVersion": "1.0", "type": "CALLBACK",
                                    "headers": {"topic": topic, "messageId": mid, "contentType": "application/json",
                                                "time": "1"},
                                    "data": json.dumps(data, ensure_ascii=False)}, ensure_ascii=False))
        ack = self.acks.get(timeout=timeout)
        assert ack["headers"]["messageId"] == mid
        return ack

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()


@contextmanager
def host_guard():
    """Every call of ``DingTalkSender`` (token, messages, cards, scene-group GroupOps) against this
    fake, both its hosts (tests/security/test_platform_hosts.py)."""
    from platforms.base import PermanentSendError
    from tests.fakes.host_guard import HostGuard

    fake = FakeDingTalk().start()

    def exercise(sender) -> None:
        sender.send_text(["zhangsan"], "你好")
        sender.send_markdown(["zhangsan"], "**你好**")
        fake.expire_token()  # a refresh through the token endpoint
        cid = sender.group_create("秋粮收购专班", "zhangsan", ["lisi"])
        sender.group_notice(cid, "通知")
        sender.group_members(cid)
        sender.group_remove(cid, ["lisi"])
        sender.group_add(cid, ["lisi"])
        sender.group_rename(cid, "新名")
        sender.group_disband(cid)
        with pytest.raises(PermanentSendError):
            sender.list_groups()  # no API: refused without a call

    host, port = fake._server.server_address[:2]
    try:
        yield HostGuard(settings=dict(dingtalk_app_key=APP_KEY, dingtalk_app_secret=APP_SECRET,
                                      dingtalk_api_base=fake.url, dingtalk_oapi_base=fake.url,
                                      dingtalk_scene_template_id="tpl-1", dingtalk_operator_user_id="admin1"),
                        exercise=exercise, address=(host, port))
    finally:
        fake.stop()
