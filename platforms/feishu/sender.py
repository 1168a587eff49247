"""``FeishuSender``: messages, interactive cards and group operations on Feishu / Lark through
``lark-oapi``'s client and request models (``platforms.base.Sender`` and ``GroupOps``).

* Host: ``QUNZHI_FEISHU_DOMAIN`` (``https://open.feishu.cn``, ``https://open.larksuite.com``, a
  private deployment's; the SDK refuses anything but an https origin, or http on loopback for
  the fake in tests). Every call, the token included, goes there.
* ``tenant_access_token``: fetched here (``auth/v3/tenant_access_token/internal``), cached until
  ten minutes before it expires, refreshed once when a call is refused with a token code
  (99991661, 99991663…) and the call retried once; threads that saw the same stale token share
  one refresh. The SDK's own token cache is off (``enable_set_token``): it never refreshes on
  those codes.
* Errors → ``TransientSendError`` / ``PermanentSendError``: HTTP 429 or code 99991400 (Feishu's
  rate limit, "request trigger frequency limit", docs: 频控策略) and 232019 (group rate limit)
  are transient with ``rate_limited``; timeouts, connection errors and HTTP 5xx transient;
  any other code permanent. (The SDK's ``channel.errors`` files 99991400 under permissions:
  Feishu's rate-limit document says otherwise.) The paginated reads (``list_groups``,
  ``group_members``) wait out a rate limit themselves (``x-ogw-ratelimit-reset``, at most
  ``max_wait`` seconds, three times) before giving up with a transient error.
* Messages carry a ``uuid`` derived from recipient and content: Feishu sends a message with the
  same uuid once within an hour, so the outbox may resend one whose outcome is unknown
  (``duplicate_check``); two identical messages to one person within the hour arrive once.
* Ids: persons and groups are stored scoped (``feishu:ou_…``, ``feishu:oc_…``). The message
  methods take stored ids (the outbox's recipients); the group operations speak Feishu's own ids
  as ``GroupOps`` does for every platform (the lifecycle and 建群 send ``repo.raw_id``s and the
  accounts of ``identity.account_ids``; ``group_members``, ``group_create`` and ``list_groups``
  answer raw ``ou_…``/``oc_…``, which ``storage.sync`` and ``storage.creation`` scope). Every
  input is put on the wire with its scope removed, so either form is accepted
  (``QUNZHI_FEISHU_ID_TYPE``: open_id by default).
* Cards: a WeCom-style template card (``button_interaction``, what the jobs and handlers build) is
  rendered as a Feishu interactive card whose buttons carry ``{"key", "task_id"}`` (read back by
  ``inbound``); a card that already is a Feishu card is sent as it is. ``update_card`` uses the
  click's callback token (valid 30 minutes, twice: we update once) and replaces the card by a
  plain note (``{"replace_name": ...}``) without buttons, so a card counts one tap.

Group operations (``DELETE /open-apis/im/v1/chats/:chat_id`` and the owner-level updates work
when the bot owns the group, or created it and holds ``im:chat:operate_as_owner``):
232009 (already dissolved) on a disband is ``GroupGone`` (the purge counts it done; the code is
also in ``gone_errcodes``); 232011 (the bot is not in the chat), 232017
(not the owner / creator without the scope) and the rest are permanent: the lifecycle then orders
the owner. Members are added and removed 50 at a time, serially (Feishu's limit per call).
Blocking: call from a worker thread.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Any, Callable, Iterator

import requests

from platforms.base import GroupGone, GroupInfo, PermanentSendError, SendResult, TransientSendError
from storage.repo import raw_id

log = logging.getLogger("qunzhi.senders.feishu")

PLATFORM = "feishu"
DEFAULT_TIMEOUT = 10.0
RATE_LIMITED = (99991400, 99991402, 232019)  # frequency limit (API gateway), "too many requests", group limit
TOKEN_CODES = (99991661, 99991663, 99991664, 99991665, 99991668)  # missing / invalid access token
ALREADY_DISSOLVED = 232009
NOT_IN_CHAT = 232011
NOT_OWNER = 232017
MEMBERS_PER_CALL = 50
PAGE_SIZE = 100
TOKEN_MARGIN = 600  # seconds before expiry a token is replaced (as the SDK's own cache does)


def feishu_error(code: int, msg: str, *, http_status: int | None = None, retry_after: float | None = None):
    text = f"code {code}: {msg}" + (f" (HTTP {http_status})" if http_status else "")
    if code in RATE_LIMITED or http_status == 429:
        e = TransientSendError(text, errcode=code, http_status=http_status, rate_limited=True)
        e.retry_after = retry_after
        return e
    if code in TOKEN_CODES:
        return TransientSendError(text, errcode=code, http_status=http_status, token_expired=True)
    if http_status is not None and http_status >= 500:
        return TransientSendError(text, errcode=code, http_status=http_status)
    return PermanentSendError(text, errcode=code, http_status=http_status)


def _retry_after(headers: dict | None) -> float | None:
    for name in ("x-ogw-ratelimit-reset", "X-Ogw-Ratelimit-Reset", "Retry-After"):
        value = (headers or {}).get(name)
        if value is not None:
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


class FeishuSender:
    duplicate_check = True  # messages carry a uuid Feishu deduplicates within an hour
    duplicate_check_interval = 3600  # seconds (the uuid's hour)
    gone_errcodes = frozenset({ALREADY_DISSOLVED})  # platforms.base.group_gone

    def __init__(self, settings, *, timeout: float = DEFAULT_TIMEOUT, max_wait: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep):
        import lark_oapi as lark

        fs = settings.feishu
        self.id_type = fs.id_type
        self.app_id, self.app_secret = fs.app_id, fs.app_secret
        self.max_wait, self.sleep = max_wait, sleep
        self.client = (lark.Client.builder().app_id(fs.app_id).app_secret(fs.app_secret).domain(fs.domain)
                       .timeout(timeout).enable_set_token(True).log_level(lark.LogLevel.ERROR).build())
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0

    # --- tenant_access_token ---------------------------------------------------------------------
    def refresh_token(self, stale: str | None = None) -> str:
        from lark_oapi.api.auth.v3 import InternalTenantAccessTokenRequest, InternalTenantAccessTokenRequestBody

        with self._lock:
            if stale is not None and self._token and self._token != stale and time.time() < self._expires:
                return self._token
            req = (InternalTenantAccessTokenRequest.builder().request_body(
                InternalTenantAccessTokenRequestBody.builder().app_id(self.app_id).app_secret(self.app_secret).build())
                .build())
            raw = self._raw("tenant_access_token", lambda: self.client.auth.v3.tenant_access_token.internal(req)).raw
            try:
                data = json.loads(raw.content)
            except ValueError:
                raise TransientSendError("tenant_access_token answered no JSON", http_status=raw.status_code) from None
            code = int(data.get("code") or 0)
            if code or raw.status_code >= 400:
                raise feishu_error(code, f"tenant_access_token: {data.get('msg', '')}", http_status=raw.status_code,
                                   retry_after=_retry_after(raw.headers))
            self._token = str(data["tenant_access_token"])
            self._expires = time.time() + int(data.get("expire") or 7200) - TOKEN_MARGIN
            return self._token

    def _current_token(self) -> str:
        token = self._token
        if token and time.time() < self._expires:
            return token
        return self.refresh_token(stale=token or "")

    # --- one call -------------------------------------------------------------------------------
    @staticmethod
    def _raw(what: str, fn: Callable[[], Any]):
        try:
            return fn()
        except requests.Timeout as e:
            raise TransientSendError(f"{what}: timed out ({e})", timeout=True) from None
        except requests.RequestException as e:
            raise TransientSendError(f"{what}: {type(e).__name__}: {e}") from None
        except ValueError as e:  # the SDK parses every answer as JSON: an HTML 502 page lands here
            raise TransientSendError(f"{what}: answer is not JSON ({e})") from None

    def _call(self, what: str, fn: Callable[[Any], Any]) -> Any:
        from lark_oapi.core.model import RequestOption

        for attempt in (1, 2):
            token = self._current_token()
            option = RequestOption.builder().tenant_access_token(token).build()
            resp = self._raw(what, lambda: fn(option))
            raw = resp.raw
            status = getattr(raw, "status_code", None)
            code = int(resp.code or 0) if resp.code is not None else (0 if status and status < 400 else -1)
            if code == 0 and (status is None or status < 400):
                return resp
            if code in TOKEN_CODES and attempt == 1:
                log.info("%s: tenant_access_token refused (%s), refreshing once", what, code)
                self.refresh_token(stale=token)
                continue
            raise feishu_error(code, f"{what}: {resp.msg or ''}", http_status=status,
                               retry_after=_retry_after(getattr(raw, "headers", None)))
        raise AssertionError("unreachable")

    def _call_waiting(self, what: str, fn: Callable[[Any], Any]) -> Any:
        """``_call``, waiting out a rate limit (``x-ogw-ratelimit-reset``) up to three times."""
        for attempt in range(4):
            try:
                return self._call(what, fn)
            except TransientSendError as e:
                if not e.rate_limited or attempt == 3:
                    raise
                wait = min(self.max_wait, getattr(e, "retry_after", None) or 1.0)
                log.info("%s: rate limited, waiting %.1fs", what, wait)
                self.sleep(wait)
        raise AssertionError("unreachable")

    @staticmethod
    def _result(resp: Any, msgid: str | None = None) -> SendResult:
        return SendResult(ok=True, errcode=int(resp.code or 0), errmsg=str(resp.msg or "ok"), msgid=msgid)

    def _wire(self, some_id: str) -> str:
        """Feishu's own id of a stored (``feishu:ou_…``) or already raw id."""
        return raw_id(PLATFORM, some_id)

    # --- messages ----------------------------------------------------------------------------------
    def _message(self, receive_type: str, receive_id: str, msg_type: str, content: dict) -> SendResult:
        from lark_oapi.api.im.v1 import CreateMessageRequest, CreateMessageRequestBody

        body = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        uuid = hashlib.sha256(f"{receive_type}|{receive_id}|{msg_type}|{body}".encode()).hexdigest()[:50]
        req = (CreateMessageRequest.builder().receive_id_type(receive_type).request_body(
            CreateMessageRequestBody.builder().receive_id(receive_id).msg_type(msg_type).content(body).uuid(uuid)
            .build()).build())
        resp = self._call("im/v1/messages", lambda o: self.client.im.v1.message.create(req, o))
        return self._result(resp, getattr(resp.data, "message_id", None) if resp.data else None)

    def _to_people(self, user_ids: list[str], msg_type: str, content: dict) -> SendResult:
        if not user_ids:
            raise PermanentSendError("no recipient")
        result = None
        for uid in user_ids:
            result = self._message(self.id_type, self._wire(uid), msg_type, content)
        return result

    def send_text(self, user_ids: list[str], text: str) -> SendResult:
        return self._to_people(user_ids, "text", {"text": text})

    def send_markdown(self, user_ids: list[str], markdown: str) -> SendResult:
        return self._to_people(user_ids, "interactive", markdown_card(markdown))

    def send_card(self, user_ids: list[str], card: dict) -> SendResult:
        return self._to_people(user_ids, "interactive", feishu_card(card))

    def send_group_text(self, chat_id: str, text: str) -> SendResult:
        return self._message("chat_id", self._wire(chat_id), "text", {"text": text})

    def send_group_card(self, chat_id: str, card: dict) -> SendResult:
        return self._message("chat_id", self._wire(chat_id), "interactive", feishu_card(card))

    def update_card(self, response_code: str, card: dict, user_ids: list[str] | None = None) -> SendResult:
        """The delayed update of a tapped card (``POST /open-apis/interactive/v1/card/update``)
        with the callback's token; no person is named (the card is a shared one)."""
        from lark_oapi.core.enum import AccessTokenType, HttpMethod
        from lark_oapi.core.model import BaseRequest

        req = (BaseRequest.builder().http_method(HttpMethod.POST).uri("/open-apis/interactive/v1/card/update")
               .token_types({AccessTokenType.TENANT}).headers({"Content-Type": "application/json; charset=utf-8"})
               .body({"token": response_code, "card": feishu_card(card)}).build())
        return self._result(self._call("interactive/v1/card/update", lambda o: self.client.request(req, o)))

    # --- GroupOps ----------------------------------------------------------------------------------
    def group_notice(self, chat_id: str, text: str) -> SendResult:
        return self.send_group_text(chat_id, text)

    def _pages(self, what: str, request: Callable[[str | None], Any], call: Callable[[Any, Any], Any]) -> Iterator:
        page_token = None
        while True:
            req = request(page_token)
            resp = self._call_waiting(what, lambda o: call(req, o))
            data = resp.data
            yield from (data.items or []) if data else []
            if not data or not data.has_more or not data.page_token:
                return
            page_token = data.page_token

    def group_members(self, chat_id: str) -> set[str] | None:
        """The chat's members (bots are not listed by Feishu), as Feishu's ids."""
        from lark_oapi.api.im.v1 import GetChatMembersRequest

        def request(page_token):
            b = GetChatMembersRequest.builder().chat_id(self._wire(chat_id)).member_id_type(self.id_type)\
                .page_size(PAGE_SIZE)
            return (b.page_token(page_token) if page_token else b).build()

        items = self._pages("chats/members", request, lambda r, o: self.client.im.v1.chat_members.get(r, o))
        return {m.member_id for m in items if m.member_id}

    def _members(self, what: str, chat_id: str, user_ids: list[str], add: bool) -> SendResult:
        from lark_oapi.api.im.v1 import (CreateChatMembersRequest, CreateChatMembersRequestBody,
                                         DeleteChatMembersRequest, DeleteChatMembersRequestBody)

        ids = [self._wire(u) for u in dict.fromkeys(user_ids)]
        if not ids:
            return SendResult(ok=True)
        result = SendResult(ok=True)
        for i in range(0, len(ids), MEMBERS_PER_CALL):  # serially, 50 a call
            chunk = ids[i:i + MEMBERS_PER_CALL]
            if add:
                req = (CreateChatMembersRequest.builder().chat_id(self._wire(chat_id)).member_id_type(self.id_type)
                       .succeed_type(1).request_body(CreateChatMembersRequestBody.builder().id_list(chunk).build())
                       .build())
                resp = self._call(what, lambda o: self.client.im.v1.chat_members.create(req, o))
            else:
                req = (DeleteChatMembersRequest.builder().chat_id(self._wire(chat_id)).member_id_type(self.id_type)
                       .request_body(DeleteChatMembersRequestBody.builder().id_list(chunk).build()).build())
                resp = self._call(what, lambda o: self.client.im.v1.chat_members.delete(req, o))
            result = self._result(resp)
        return result

    def group_remove(self, chat_id: str, user_ids: list[str]) -> SendResult:
        return self._members("chats/members delete", chat_id, user_ids, add=False)

    def group_add(self, chat_id: str, user_ids: list[str]) -> SendResult:
        return self._members("chats/members add", chat_id, user_ids, add=True)

    def group_rename(self, chat_id: str, name: str) -> SendResult:
        from lark_oapi.api.im.v1 import UpdateChatRequest, UpdateChatRequestBody

        req = (UpdateChatRequest.builder().chat_id(self._wire(chat_id)).user_id_type(self.id_type)
               .request_body(UpdateChatRequestBody.builder().name(name).build()).build())
        return self._result(self._call("chats update", lambda o: self.client.im.v1.chat.update(req, o)))

    def group_disband(self, chat_id: str) -> SendResult:
        """The real disband; 232009 (already dissolved) raises ``GroupGone``, which the purge
        counts as done. Feishu keeps no history."""
        from lark_oapi.api.im.v1 import DeleteChatRequest

        req = DeleteChatRequest.builder().chat_id(self._wire(chat_id)).build()
        try:
            return self._result(self._call("chats delete", lambda o: self.client.im.v1.chat.delete(req, o)))
        except PermanentSendError as e:
            if e.errcode == ALREADY_DISSOLVED:
                raise GroupGone(str(e), errcode=e.errcode, http_status=e.http_status) from None
            raise

    def group_create(self, name: str, owner: str, user_ids: list[str]) -> str:
        """A group with ``owner`` (a person) as its owner, created by the bot (so with
        ``im:chat:operate_as_owner`` the bot can later rename, empty and disband it). The first
        50 members come with it, the rest are added after. Retry-safe: the request's uuid is
        derived from name, owner and members (Feishu creates one group per uuid within 10 hours).
        Returns Feishu's ``oc_…`` (``storage.creation`` stores it scoped)."""
        from lark_oapi.api.im.v1 import CreateChatRequest, CreateChatRequestBody

        members = [self._wire(u) for u in dict.fromkeys([owner, *user_ids])]
        wire_owner = self._wire(owner)
        uuid = hashlib.sha256("|".join([name, wire_owner, *sorted(members)]).encode()).hexdigest()[:50]
        # set_bot_manager is left at its default (false): the SDK would send a Python "False"
        req = (CreateChatRequest.builder().user_id_type(self.id_type).uuid(uuid)
               .request_body(CreateChatRequestBody.builder().name(name).owner_id(wire_owner)
                             .user_id_list(members[:MEMBERS_PER_CALL]).chat_mode("group").chat_type("private").build())
               .build())
        resp = self._call("chats create", lambda o: self.client.im.v1.chat.create(req, o))
        chat_id = getattr(resp.data, "chat_id", None) if resp.data else None
        if not chat_id:
            raise PermanentSendError("chats create answered no chat_id")
        if len(members) > MEMBERS_PER_CALL:
            self.group_add(chat_id, members[MEMBERS_PER_CALL:])
        return chat_id

    def list_groups(self) -> list[GroupInfo]:
        """The groups the bot is in (paginated, rate limits waited out), with Feishu's ids."""
        from lark_oapi.api.im.v1 import ListChatRequest

        def request(page_token):
            b = ListChatRequest.builder().user_id_type(self.id_type).page_size(PAGE_SIZE)
            return (b.page_token(page_token) if page_token else b).build()

        out = []
        for c in self._pages("chats list", request, lambda r, o: self.client.im.v1.chat.list(r, o)):
            if not c.chat_id:
                continue
            owner = c.owner_id if c.owner_id and c.owner_id_type in (None, self.id_type) else None
            out.append(GroupInfo(chat_id=c.chat_id, name=c.name or "", owner=owner))
        return out


# --- cards -------------------------------------------------------------------------------------------
def _plain(text: str) -> dict:
    return {"tag": "plain_text", "content": str(text)}


def feishu_card(card: dict) -> dict:
    """A Feishu interactive card (JSON 1.0) for a WeCom-style template card; a Feishu card as is."""
    if any(k in card for k in ("elements", "schema", "i18n_elements", "body")):
        return card
    config = {"wide_screen_mode": True, "update_multi": True}  # shared: updated by token, naming nobody
    if set(card) == {"replace_name"}:  # a tapped card's acknowledgement: a note, no buttons left
        return {"config": config, "elements": [{"tag": "div", "text": _plain(card["replace_name"])}]}
    main = card.get("main_title") or {}
    elements: list[dict] = []
    for text in (main.get("desc"), card.get("sub_title_text")):
        if text:
            elements.append({"tag": "div", "text": _plain(text)})
    task_id = str(card.get("task_id") or "")
    buttons = [{"tag": "button", "text": _plain(b.get("text", "")), "type": "primary" if b.get("style") == 1 else "default",
                "value": {"key": str(b.get("key", "")), "task_id": task_id}} for b in card.get("button_list") or []]
    if buttons:
        elements.append({"tag": "action", "actions": buttons})
    out = {"config": config, "elements": elements}
    if main.get("title"):
        out["header"] = {"title": _plain(main["title"])}
    return out


def markdown_card(markdown: str) -> dict:
    return {"config": {"wide_screen_mode": True}, "elements": [{"tag": "markdown", "content": markdown}]}
