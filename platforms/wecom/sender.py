"""``WeComSender``: application messages, template cards and appchat groups through wechatpy.

* API base from ``settings.wecom_api_base`` (``client.API_BASE_URL``), so tests point it at the
  fake server on 127.0.0.1.
* The access token is fetched here from ``{api_base}gettoken?corpid=&corpsecret=`` (wechatpy's
  ``fetch_access_token`` hard-codes the real host and has no timeout); on 40014/42001 it is
  refreshed once and the call retried once.
* Errors are mapped to ``TransientSendError`` / ``PermanentSendError`` (``platforms.base``).
* Blocking: call from a worker thread, never on the event loop. One connection pool per sender
  (``pool_size`` ≥ the dispatcher's workers, keep-alive) shared by all threads: urllib3's pool
  behind ``platforms.http.PooledHTTP``, or a ``requests.Session`` when the environment names a
  proxy for the API base; the token is fetched once and refreshed once
  per expiry (threads that saw the same stale token wait for one refresh).
* ``message/send`` carries ``enable_duplicate_check=1`` and ``duplicate_check_interval``
  (``duplicate_check_interval`` seconds, default 1800, WeCom's maximum 14400): WeCom drops the same
  message to the same people within the interval. The sender declares it (``duplicate_check``),
  so the outbox may resend a ``message/send`` whose outcome is unknown (timeout, crash) while
  still inside the interval. Consequence to know: two *different* outbox rows with identical
  content for the same person within the interval are delivered once. Pass
  ``duplicate_check_interval=0`` to switch it off (the dispatcher then parks such rows as
  ``uncertain``).
"""
from __future__ import annotations

import logging
import threading
import time
import warnings
from typing import Any, Callable

import requests
from requests.adapters import HTTPAdapter
from wechatpy.enterprise import WeChatClient
from wechatpy.exceptions import WeChatClientException

from platforms.http import PooledHTTP, answered
from platforms.base import TOKEN_ERRCODES, PermanentSendError, SendError, SendResult, TransientSendError, error_for
from platforms.wecom.groupops import AppchatGroupOps

log = logging.getLogger("qunzhi.senders.wecom")

DEFAULT_TIMEOUT = 10.0  # seconds per HTTP call
DEFAULT_POOL_SIZE = 64  # keep-alive connections kept per host (≥ the outbox dispatcher's workers)
DUPLICATE_CHECK_INTERVAL = 1800  # seconds (WeCom's default; at most 14400)


class _Client(WeChatClient):
    """wechatpy's client with the token fetched through the configured API base."""

    def __init__(self, *args, token_fetcher: Callable[[], Any], **kwargs):
        self._token_fetcher = token_fetcher
        super().__init__(*args, **kwargs)

    def fetch_access_token(self):
        return self._token_fetcher()


class WeComSender(AppchatGroupOps):
    """Messages, cards and appchat groups; the lifecycle's ``GroupOps`` over appchat_* (``groupops``)."""

    def __init__(self, settings, *, timeout: float = DEFAULT_TIMEOUT, session: requests.Session | None = None,
                 pool_size: int = DEFAULT_POOL_SIZE, duplicate_check_interval: int = DUPLICATE_CHECK_INTERVAL):
        self.duplicate_check_interval = max(0, min(14400, int(duplicate_check_interval)))
        self.corp_id = settings.wecom_corp_id
        self.secret = settings.wecom_secret
        self.agent_id = int(settings.wecom_agent_id or 0)
        self.api_base = settings.wecom_api_base.rstrip("/") + "/"
        self.timeout = timeout
        self._lock = threading.Lock()
        self.client = _Client(self.corp_id, self.secret, timeout=timeout, auto_retry=False,
                              token_fetcher=self._expiring)
        self.client.API_BASE_URL = self.api_base
        if session is None:
            verify = settings.ca_bundle or True
            # Proxy settings from the environment are read once here, not on every request.
            proxies = requests.utils.get_environ_proxies(self.api_base)
            if not proxies:  # the usual case: urllib3's pool directly (platforms/http.py says why)
                session = PooledHTTP(pool_size=pool_size, verify=verify)
            else:
                session = requests.Session()
                adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                session.proxies.update(proxies)
                session.trust_env = False
                session.verify = verify
        self.client._http = session

    @property
    def duplicate_check(self) -> bool:
        """Declared to the outbox dispatcher: ``message/send`` is deduplicated by WeCom within
        ``duplicate_check_interval`` seconds, so resending an uncertain one inside it is safe."""
        return self.duplicate_check_interval > 0

    # --- access token ------------------------------------------------------------------------
    def refresh_token(self, stale: str | None = None) -> str:
        """Fetch a new access token from ``{api_base}gettoken`` and store it in the client.

        With ``stale`` (the token a call was rejected with): if another thread has already
        replaced it, use that one instead of fetching again."""
        with self._lock:
            current = self.client.session.get(self.client.access_token_key)
            if stale is not None and current and current != stale:
                return current
            res = answered("gettoken", lambda: self.client._http.get(
                self.api_base + "gettoken", params={"corpid": self.corp_id, "corpsecret": self.secret},
                timeout=self.timeout))
            try:
                data = res.json()
            except ValueError:
                raise TransientSendError("gettoken answered no JSON") from None
            errcode = int(data.get("errcode") or 0)
            if errcode:
                raise error_for(errcode, str(data.get("errmsg", "")))
            token = str(data["access_token"])
            expires_in = int(data.get("expires_in") or 7200)
            self.client.session.set(self.client.access_token_key, token, expires_in)
            self.client.expires_at = int(time.time()) + expires_in
            return token

    def _expiring(self) -> str:
        """wechatpy asks for a token when ours is about to expire: one refresh for all threads."""
        return self.refresh_token(stale=self.client.session.get(self.client.access_token_key) or "")

    def _ensure_token(self) -> str:
        token = self.client.session.get(self.client.access_token_key)
        if not token:
            token = self.refresh_token(stale="")  # threads racing here share one fetch
        return token

    # --- one call with error mapping and one token retry -------------------------------------
    def _call(self, what: str, fn: Callable[[], dict]) -> dict:
        token = None
        for attempt in (1, 2):
            try:
                token = self._ensure_token()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # wechatpy's own _post/_get
                    result = fn()
                return result if isinstance(result, dict) else {"result": result}
            except WeChatClientException as e:
                if e.errcode is None:  # HTTP status error
                    status = getattr(e.response, "status_code", None)
                    if status is None or status >= 500 or status == 429:
                        raise TransientSendError(f"{what}: HTTP {status}", http_status=status) from None
                    raise PermanentSendError(f"{what}: HTTP {status}", http_status=status) from None
                errcode = int(e.errcode)
                if errcode in TOKEN_ERRCODES and attempt == 1:
                    log.info("%s: access token rejected (%s), refreshing once", what, errcode)
                    self.refresh_token(stale=token)
                    continue
                raise error_for(errcode, f"{what}: {e.errmsg}") from None
            except SendError:
                raise
            except requests.Timeout as e:
                raise TransientSendError(f"{what}: timed out ({e})", timeout=True) from None
            except requests.RequestException as e:
                raise TransientSendError(f"{what}: {e}") from None
        raise AssertionError("unreachable")

    @staticmethod
    def _result(data: dict) -> SendResult:
        msgid = data.get("msgid")
        return SendResult(ok=True, errcode=int(data.get("errcode") or 0), errmsg=str(data.get("errmsg", "ok")),
                          msgid=str(msgid) if msgid else None, raw=data)

    # --- application messages ------------------------------------------------------------------
    def _send(self, user_ids: list[str], msg: dict) -> SendResult:
        if self.duplicate_check_interval:
            msg = {**msg, "enable_duplicate_check": 1, "duplicate_check_interval": self.duplicate_check_interval}
        return self._result(self._call("message/send",
                                       lambda: self.client.message.send(self.agent_id, list(user_ids), msg=msg)))

    def send_text(self, user_ids: list[str], text: str) -> SendResult:
        return self._send(user_ids, {"msgtype": "text", "text": {"content": text}, "safe": 0})

    def send_markdown(self, user_ids: list[str], markdown: str) -> SendResult:
        return self._send(user_ids, {"msgtype": "markdown", "markdown": {"content": markdown}})

    def send_card(self, user_ids: list[str], card: dict) -> SendResult:
        return self._send(user_ids, {"msgtype": "template_card", "template_card": card})

    def update_card(self, response_code: str, card: dict, user_ids: list[str] | None = None) -> SendResult:
        data: dict[str, Any] = {"agentid": self.agent_id, "response_code": response_code}
        if user_ids:
            data["userids"] = list(user_ids)
        if set(card) == {"replace_name"}:
            data["button"] = card  # only relabel the button
        else:
            data["template_card"] = card
        return self._result(self._call("message/update_template_card",
                                       lambda: self.client.post("message/update_template_card", data=data)))

    # --- appchat groups ----------------------------------------------------------------------
    def appchat_create(self, chat_id: str, name: str, owner: str, user_ids: list[str]) -> SendResult:
        data = self._call("appchat/create", lambda: self.client.appchat.create(
            chat_id=chat_id, name=name, owner=owner, user_list=list(user_ids)))
        return SendResult(ok=True, errcode=0, errmsg=str(data.get("errmsg", "ok")),
                          msgid=str(data.get("chatid") or chat_id), raw=data)

    def appchat_update(self, chat_id: str, name: str | None = None, owner: str | None = None,
                       add_user_list: list[str] | None = None,
                       del_user_list: list[str] | None = None) -> SendResult:
        return self._result(self._call("appchat/update", lambda: self.client.appchat.update(
            chat_id, name=name, owner=owner, add_user_list=add_user_list, del_user_list=del_user_list)))

    def appchat_get(self, chat_id: str) -> dict:
        return self._call("appchat/get", lambda: self.client.appchat.get(chat_id))

    def appchat_send_text(self, chat_id: str, text: str) -> SendResult:
        return self._result(self._call("appchat/send", lambda: self.client.appchat.send_text(chat_id, text)))
