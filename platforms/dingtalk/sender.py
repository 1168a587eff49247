"""``DingTalkSender``: the robot's messages and cards, scene groups (场景群) through
``platforms.base.GroupOps``, and 专属钉钉's activity counts.

Two API hosts, both configurable for a private deployment (``QUNZHI_DINGTALK_API_BASE`` for the
new OpenAPI ``/v1.0/...``, ``QUNZHI_DINGTALK_OAPI_BASE`` for the classic ``/topapi/...``); every
call, the token included, goes to them and nowhere else. The access token is the enterprise-internal
app's (``POST /v1.0/oauth2/accessToken`` with AppKey/AppSecret); it is sent as the
``x-acs-dingtalk-access-token`` header to the new API and as ``?access_token=`` to the classic one.

Calls (DingTalk documentation; the paths are also in ``alibabacloud-dingtalk``'s clients):

======================  ==============================================================
send_text / markdown    ``POST /v1.0/robot/oToMessages/batchSend`` (msgKey sampleText / sampleMarkdown)
send_card, update_card  ``POST /v1.0/im/v1.0/robot/interactiveCards/send``, ``PUT /v1.0/im/robots/interactiveCards``
                        (the robot's interactive cards, as ``dingtalk-stream``'s ``ChatbotHandler``)
group_notice            ``POST /v1.0/robot/groupMessages/send``
group_create            ``POST /topapi/im/chat/scenegroup/create`` (needs a scene-group template)
group_rename            ``POST /topapi/im/chat/scenegroup/update``
group_add / remove      ``POST /topapi/im/chat/scenegroup/member/add`` / ``member/delete``
group_members           ``POST /topapi/im/chat/scenegroup/member/get`` (cursor pages)
group_disband           ``POST /v1.0/im/chat/scenegroup/disband`` (``DsbandOpenSceneGroupRequest``)
list_groups             none for the robot's groups: ``PermanentSendError`` (capability False)
active_groups           ``GET /v1.0/exclusive/data/activeGroups`` (专属钉钉, per day, pages)
org_group_infos         ``GET /v1.0/exclusive/securities/orgGroupInfos`` (专属钉钉, last-active times)
======================  ==============================================================

Errors → ``TransientSendError`` / ``PermanentSendError``:

* classic API (``errcode``): 0 ok; -1 系统繁忙 → transient; 40014/42001 (bad/expired token) →
  one refresh, then transient; 90002/90005/90006/90018 (call limits, QPS) → transient
  ``rate_limited``; 88 鉴权异常 (``sub_code`` 60011 no permission …) and any other → permanent
  (e.g. an ordinary group is no scene group; 群主不在应用可见性内: the owner is outside the app's
  visible range, so the group cannot be created with them as owner).
* new API: HTTP 200 ok; 401 or code ``InvalidAuthentication`` → one refresh; 429, codes starting
  ``Throttling`` or ``Forbidden.AccessDenied.QpsLimit`` → transient ``rate_limited``; 5xx, timeouts and
  connection errors → transient; other 4xx → permanent with DingTalk's ``code: message``.

Blocking: call from worker threads, never on the event loop.
"""
from __future__ import annotations

import secrets
import json
import logging
import threading
import time
from datetime import date, datetime, timezone
from typing import Any

import requests

from platforms.base import GroupInfo, PermanentSendError, SendError, SendResult, TransientSendError
from platforms.http import PooledHTTP, answered
from storage.repo import raw_id

PLATFORM = "dingtalk"

log = logging.getLogger("qunzhi.senders.dingtalk")

DEFAULT_TIMEOUT = 10.0
TOKEN_ERRCODES = (40014, 42001)
BUSY_ERRCODES = (-1,)
RATE_ERRCODES = (90002, 90005, 90006, 90018)
MEMBER_BATCH = 20          # user ids per member add/delete call (scene-group APIs take a comma list)
PAGE_SIZE = 100
CARD_PREFIX = "dingtalk:"  # response codes of DingTalk cards (scheduler.routing sends them here)


def _rate_code(code: str) -> bool:
    return code.startswith("Throttling") or code.startswith("Forbidden.AccessDenied.QpsLimit")


class DingTalkSender:
    def __init__(self, settings, *, timeout: float = DEFAULT_TIMEOUT, session: Any = None, pool_size: int = 16):
        d = settings.dingtalk
        self.app_key, self.app_secret = d.app_key, d.app_secret
        self.robot_code = d.robot_code
        self.api_base, self.oapi_base = d.api_base.rstrip("/"), d.oapi_base.rstrip("/")
        self.scene_template_id = d.scene_template_id
        self.card_template_id = d.card_template_id or "StandardCard"
        self.operator_user_id = d.operator_user_id
        self.timeout = timeout
        self.http = session or PooledHTTP(pool_size=pool_size, verify=settings.ca_bundle or True)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0

    # --- token ---------------------------------------------------------------------------------
    def refresh_token(self, stale: str | None = None) -> str:
        with self._lock:
            if stale is not None and self._token and self._token != stale and time.time() < self._expires:
                return self._token
            res = answered("oauth2/accessToken", lambda: self.http.post(
                self.api_base + "/v1.0/oauth2/accessToken", json={"appKey": self.app_key, "appSecret": self.app_secret},
                timeout=self.timeout))
            data = self._json(res, "oauth2/accessToken")
            if res.status_code != 200 or not data.get("accessToken"):
                raise self._new_error("oauth2/accessToken", res.status_code, data)
            self._token = str(data["accessToken"])
            self._expires = time.time() + max(60, int(data.get("expireIn") or 7200) - 300)
            return self._token

    def _ensure_token(self) -> str:
        token = self._token
        if not token or time.time() >= self._expires:
            token = self.refresh_token(stale=token or "")
        return token

    @staticmethod
    def _json(res, what: str) -> dict:
        try:
            data = res.json()
        except ValueError:
            if res.status_code >= 500 or res.status_code == 429:
                raise TransientSendError(f"{what}: HTTP {res.status_code}", http_status=res.status_code) from None
            raise TransientSendError(f"{what}: answered no JSON (HTTP {res.status_code})",
                                     http_status=res.status_code) from None
        return data if isinstance(data, dict) else {"result": data}

    @staticmethod
    def _new_error(what: str, status: int, data: dict) -> SendError:
        code = str(data.get("code") or "")
        text = f"{what}: HTTP {status} {code}: {data.get('message', '')}"
        if status == 429 or _rate_code(code):
            return TransientSendError(text, http_status=status, rate_limited=True)
        if status == 401 or code == "InvalidAuthentication":
            return TransientSendError(text, http_status=status, token_expired=True)
        if status >= 500:
            return TransientSendError(text, http_status=status)
        return PermanentSendError(text, http_status=status)

    @staticmethod
    def _oapi_error(what: str, data: dict) -> SendError:
        errcode = int(data.get("errcode") or 0)
        sub = f" ({data.get('sub_code')}: {data.get('sub_msg')})" if data.get("sub_code") else ""
        text = f"{what}: errcode {errcode}: {data.get('errmsg', '')}{sub}"
        if errcode in RATE_ERRCODES:
            return TransientSendError(text, errcode=errcode, rate_limited=True)
        if errcode in TOKEN_ERRCODES:
            return TransientSendError(text, errcode=errcode, token_expired=True)
        if errcode in BUSY_ERRCODES:
            return TransientSendError(text, errcode=errcode)
        return PermanentSendError(text, errcode=errcode)

    # --- one call, one token retry -----------------------------------------------------------
    def _call(self, what: str, method: str, path: str, *, json_body: Any = None, params: dict | None = None,
              classic: bool = False) -> dict:
        for attempt in (1, 2):
            token = self._ensure_token()
            try:
                if classic:
                    url = self.oapi_base + path
                    res = self.http.request(method, url, params={"access_token": token, **(params or {})},
                                            json=json_body, timeout=self.timeout)
                else:
                    res = self.http.request(method, self.api_base + path, params=params, json=json_body,
                                            timeout=self.timeout, headers={"x-acs-dingtalk-access-token": token})
            except requests.Timeout as e:
                raise TransientSendError(f"{what}: timed out ({e})", timeout=True) from None
            except requests.RequestException as e:
                raise TransientSendError(f"{what}: {e}") from None
            data = self._json(res, what)
            if classic:
                if res.status_code >= 500 or res.status_code == 429:
                    raise TransientSendError(f"{what}: HTTP {res.status_code}", http_status=res.status_code,
                                             rate_limited=res.status_code == 429)
                err = self._oapi_error(what, data) if int(data.get("errcode") or 0) else None
            else:
                err = self._new_error(what, res.status_code, data) if res.status_code != 200 else None
            if err is None:
                return data
            if isinstance(err, TransientSendError) and err.token_expired and attempt == 1:
                log.info("%s: access token rejected, refreshing once", what)
                self.refresh_token(stale=token)
                continue
            raise err
        raise AssertionError("unreachable")

    @staticmethod
    def _ok(data: dict, msgid: Any = None) -> SendResult:
        return SendResult(ok=True, msgid=str(msgid) if msgid else None, raw=data)

    # --- messages to persons -------------------------------------------------------------------
    def _to_persons(self, user_ids: list[str], key: str, param: dict) -> SendResult:
        data = self._call("robot/oToMessages/batchSend", "POST", "/v1.0/robot/oToMessages/batchSend", json_body={
            "robotCode": self.robot_code, "userIds": [raw_id(PLATFORM, u) for u in user_ids], "msgKey": key,
            "msgParam": json.dumps(param, ensure_ascii=False)})
        return self._ok(data, data.get("processQueryKey"))

    def send_text(self, user_ids: list[str], text: str) -> SendResult:
        return self._to_persons(user_ids, "sampleText", {"content": text})

    def send_markdown(self, user_ids: list[str], markdown: str) -> SendResult:
        return self._to_persons(user_ids, "sampleMarkdown", {"title": markdown.split("\n", 1)[0][:40] or "群治",
                                                             "text": markdown})

    # --- interactive cards ----------------------------------------------------------------------
    def send_card(self, user_ids: list[str], card: dict) -> SendResult:
        """The neutral one-tap card (WeCom template-card shape: ``main_title``, ``task_id``,
        ``button_list`` with ``key``) as a robot interactive card, one per person. The card's biz id
        is ``<task_id>|<random>``: the click callback carries it back (``outTrackId``) and the
        update uses it; nothing in it links the card to the person."""
        results = []
        for uid in (raw_id(PLATFORM, u) for u in user_ids):
            task = str(card.get("task_id") or "card")
            biz = f"{task}|{secrets.token_hex(8)}"
            data = self._call("robot/interactiveCards/send", "POST", "/v1.0/im/v1.0/robot/interactiveCards/send",
                              json_body={"cardTemplateId": self.card_template_id, "robotCode": self.robot_code,
                                         "cardBizId": biz, "cardData": json.dumps(card_data(card), ensure_ascii=False),
                                         "singleChatReceiver": json.dumps({"userId": uid}),
                                         "sendOptions": {"atAll": False}})
            results.append((biz, data))
        return self._ok(results[-1][1] if results else {}, results[-1][0] if results else None)

    def update_card(self, response_code: str, card: dict, user_ids: list[str] | None = None) -> SendResult:
        """Update a tapped card once (``response_code`` = ``dingtalk:<cardBizId>``): the text the
        handler chose (``{"replace_name": ...}``) replaces the buttons."""
        biz = response_code[len(CARD_PREFIX):] if response_code.startswith(CARD_PREFIX) else response_code
        data = self._call("robots/interactiveCards", "PUT", "/v1.0/im/robots/interactiveCards",
                          json_body={"cardBizId": biz, "cardData": json.dumps(updated_card_data(card),
                                                                               ensure_ascii=False)})
        return self._ok(data, biz)

    # --- scene groups (GroupOps) ---------------------------------------------------------------
    def group_notice(self, chat_id: str, text: str) -> SendResult:
        data = self._call("robot/groupMessages/send", "POST", "/v1.0/robot/groupMessages/send", json_body={
            "robotCode": self.robot_code, "openConversationId": chat_id, "msgKey": "sampleText",
            "msgParam": json.dumps({"content": text}, ensure_ascii=False)})
        return self._ok(data, data.get("processQueryKey"))

    def group_members(self, chat_id: str) -> set[str] | None:
        members: set[str] = set()
        cursor = 0
        for _ in range(10_000):  # a scene group holds at most a few thousand members
            data = self._call("scenegroup/member/get", "POST", "/topapi/im/chat/scenegroup/member/get", classic=True,
                              json_body={"open_conversation_id": chat_id, "size": PAGE_SIZE, "cursor": cursor})
            result = data.get("result") or {}
            members.update(str(u) for u in result.get("member_user_ids") or ())
            if not result.get("has_more"):
                return members
            cursor = result.get("next_cursor")
        raise TransientSendError("scenegroup/member/get: too many pages")

    def _members_call(self, what: str, path: str, chat_id: str, user_ids: list[str]) -> SendResult:
        data: dict = {}
        ids = list(dict.fromkeys(user_ids))
        for i in range(0, len(ids), MEMBER_BATCH):
            data = self._call(what, "POST", path, classic=True, json_body={
                "open_conversation_id": chat_id, "user_ids": ",".join(ids[i:i + MEMBER_BATCH])})
        return self._ok(data)

    def group_remove(self, chat_id: str, user_ids: list[str]) -> SendResult:
        return self._members_call("scenegroup/member/delete", "/topapi/im/chat/scenegroup/member/delete", chat_id,
                                  user_ids)

    def group_add(self, chat_id: str, user_ids: list[str]) -> SendResult:
        return self._members_call("scenegroup/member/add", "/topapi/im/chat/scenegroup/member/add", chat_id, user_ids)

    def group_rename(self, chat_id: str, name: str) -> SendResult:
        return self._ok(self._call("scenegroup/update", "POST", "/topapi/im/chat/scenegroup/update", classic=True,
                                   json_body={"open_conversation_id": chat_id, "title": name}))

    def group_disband(self, chat_id: str) -> SendResult:
        return self._ok(self._call("scenegroup/disband", "POST", "/v1.0/im/chat/scenegroup/disband",
                                   json_body={"openConversationId": chat_id}))

    def group_create(self, name: str, owner: str, user_ids: list[str]) -> str:
        if not self.scene_template_id:
            raise PermanentSendError("scenegroup/create: QUNZHI_DINGTALK_SCENE_TEMPLATE_ID is not set")
        members = list(dict.fromkeys([owner, *user_ids]))
        data = self._call("scenegroup/create", "POST", "/topapi/im/chat/scenegroup/create", classic=True, json_body={
            "title": name, "template_id": self.scene_template_id, "owner_user_id": owner,
            "user_ids": ",".join(members)})
        cid = (data.get("result") or {}).get("open_conversation_id")
        if not cid:
            raise PermanentSendError("scenegroup/create: no open_conversation_id in the answer")
        return str(cid)

    def list_groups(self) -> list[GroupInfo]:
        raise PermanentSendError("DingTalk has no API listing a robot's groups (the sync job is not available)")

    # --- 专属钉钉: activity without content -----------------------------------------------------
    def active_groups(self, day: date) -> list[dict]:
        """Every group active on ``day`` with its message count (``sendMessageCnt1d``), all pages."""
        out: list[dict] = []
        page = 1
        while True:
            data = self._call("exclusive/data/activeGroups", "GET", "/v1.0/exclusive/data/activeGroups",
                              params={"statDate": day.strftime("%Y%m%d"), "pageNumber": page, "pageSize": PAGE_SIZE})
            rows = data.get("data") or []
            out.extend(r for r in rows if isinstance(r, dict))
            if not rows or len(out) >= int(data.get("totalCount") or 0) or page >= 10_000:
                return out
            page += 1

    def org_group_infos(self) -> list[dict]:
        """Every group of the organisation with ``openConversationId`` and ``groupLastActiveTime``."""
        if not self.operator_user_id:
            raise PermanentSendError("orgGroupInfos needs QUNZHI_DINGTALK_OPERATOR_USER_ID")
        out: list[dict] = []
        start = 0
        while True:
            data = self._call("exclusive/securities/orgGroupInfos", "GET", "/v1.0/exclusive/securities/orgGroupInfos",
                              params={"operatorUserId": self.operator_user_id, "pageStart": start,
                                      "pageSize": PAGE_SIZE})
            items = data.get("items") or []
            out.extend(i for i in items if isinstance(i, dict))
            start += len(items)
            if not items or start >= int(data.get("totalCount") or 0) or start >= 1_000_000:
                return out


# --- what people read about a failure -----------------------------------------------------------------
_REASONS = (
    ("群主不在应用可见性内", "群主不在钉钉应用的可见范围内，请管理员在开发者后台把此人加入应用可见范围后再试"),
    ("非场景群", "这是钉钉普通群，机器人不能操作，只能请群主手动处理"),
    ("群会话不存在", "钉钉上找不到这个群（可能已被解散）"),
    ("template_id", "未配置场景群模板（QUNZHI_DINGTALK_SCENE_TEMPLATE_ID），不能经机器人建群"),
    ("SCENE_TEMPLATE_ID", "未配置场景群模板（QUNZHI_DINGTALK_SCENE_TEMPLATE_ID），不能经机器人建群"),
)


def explain(error: SendError) -> str:
    """A failed DingTalk call in Chinese, for the person who asked (no codes)."""
    text = str(error)
    for needle, reason in _REASONS:
        if needle in text:
            return reason
    if isinstance(error, TransientSendError):
        return "钉钉暂时无法处理（繁忙或限流），稍后会自动重试"
    return "钉钉拒绝了这次操作，请联系管理员查看日志"


# --- cards -----------------------------------------------------------------------------------------
def card_data(card: dict) -> dict:
    """The neutral card (template-card shape) as a StandardCard's data: title, text and one
    button per choice whose ``actionId`` is the choice's key (the click callback's ``actionIds``)."""
    title = (card.get("main_title") or {}).get("title") or ""
    desc = (card.get("main_title") or {}).get("desc") or card.get("sub_title_text") or ""
    buttons = [{"text": b.get("text", ""), "color": "blue" if b.get("style") == 1 else "gray",
                "id": str(b.get("key", "")), "request": True}
               for b in card.get("button_list") or ()]
    return {"config": {"autoLayout": True, "enableForward": False},
            "header": {"title": {"type": "text", "text": title}},
            "contents": [{"type": "markdown", "text": desc, "id": "desc"},
                         {"type": "action", "actions": buttons, "id": "actions"}],
            "task_id": str(card.get("task_id") or "")}


def updated_card_data(card: dict) -> dict:
    """The card after its one tap: the handler's words instead of the buttons."""
    if set(card) == {"replace_name"}:
        return {"config": {"autoLayout": True}, "contents": [{"type": "text", "text": card["replace_name"],
                                                              "id": "done"}]}
    return card_data(card)


def from_millis(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
