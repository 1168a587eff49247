"""What a platform is (``Platform``), what it can do to a group (``Capabilities``), what the
web app gives its inbound adapters (``Inbox``), and the outbound sender contract with the errors the
outbox dispatcher acts on.

A platform is one folder ``platforms/<name>/`` whose ``__init__`` defines ``platform`` (an object
satisfying ``Platform``, usually a ``PlatformBase``), listed once in ``platforms.registry``.

Senders are synchronous (they block on HTTP): call them from scheduler threads or through
``run_in_threadpool``, never directly on the event loop.

* ``TransientSendError``: try again later (timeouts, connection errors, HTTP 5xx/429, errcode
  45009 rate limit → ``rate_limited=True``, 40014/42001 token expired after one refresh →
  ``token_expired=True``, -1 system busy).
* ``PermanentSendError``: retrying will not help (any other errcode, HTTP 4xx); the dispatcher
  marks the message dead.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

from governance.capabilities import ORDER_CAPS, Capabilities  # noqa: F401 (the platforms' vocabulary)
from governance.lifecycle import APPCHAT, BRIDGE, ORDER  # noqa: F401

if TYPE_CHECKING:
    from config.settings import Settings
    from governance.events import Event, Reply

RATE_LIMITED = 45009          # 接口调用超过限制
TOKEN_ERRCODES = (40014, 42001)  # 不合法的 access_token / access_token 已过期
BUSY_ERRCODES = (-1, 45033)      # 系统繁忙 / 接口并发调用超过限制


@dataclass(frozen=True)
class SendResult:
    ok: bool
    errcode: int = 0
    errmsg: str = "ok"
    msgid: str | None = None
    raw: dict[str, Any] | None = None


class SendError(Exception):
    def __init__(self, message: str, *, errcode: int | None = None, http_status: int | None = None):
        super().__init__(message)
        self.errcode = errcode
        self.http_status = http_status


class TransientSendError(SendError):
    def __init__(self, message: str, *, errcode: int | None = None, http_status: int | None = None,
                 rate_limited: bool = False, token_expired: bool = False, timeout: bool = False):
        super().__init__(message, errcode=errcode, http_status=http_status)
        self.rate_limited = rate_limited
        self.token_expired = token_expired
        self.timeout = timeout


class PermanentSendError(SendError):
    """WeCom refused for good (bad recipient, bad content): retrying will not help."""


class GroupGone(PermanentSendError):
    """The group does not exist on the platform any more (already dissolved, e.g. Feishu 232009):
    for the purge's ``group_disband`` that is the wanted outcome. A sender may raise it, or declare
    the platform's codes in ``gone_errcodes`` (see :func:`group_gone`)."""


def group_gone(ops: Any, error: SendError) -> bool:
    """Whether ``error`` from ``ops`` says the group is already gone on the platform: a
    :class:`GroupGone`, or a ``PermanentSendError`` whose ``errcode`` is in the sender's
    ``gone_errcodes`` (a set of the platform's "already dissolved" codes)."""
    if isinstance(error, GroupGone):
        return True
    codes = getattr(ops, "gone_errcodes", None) or ()
    return isinstance(error, PermanentSendError) and error.errcode is not None and error.errcode in codes


def error_for(errcode: int, errmsg: str, *, http_status: int | None = None) -> SendError:
    """Map a WeCom errcode to the exception the dispatcher understands."""
    text = f"errcode {errcode}: {errmsg}"
    if errcode == RATE_LIMITED:
        return TransientSendError(text, errcode=errcode, http_status=http_status, rate_limited=True)
    if errcode in TOKEN_ERRCODES:
        return TransientSendError(text, errcode=errcode, http_status=http_status, token_expired=True)
    if errcode in BUSY_ERRCODES:
        return TransientSendError(text, errcode=errcode, http_status=http_status)
    return PermanentSendError(text, errcode=errcode, http_status=http_status)


@runtime_checkable
class Sender(Protocol):
    def send_text(self, user_ids: list[str], text: str) -> SendResult: ...

    def send_markdown(self, user_ids: list[str], markdown: str) -> SendResult: ...

    def send_card(self, user_ids: list[str], card: dict) -> SendResult: ...

    def update_card(self, response_code: str, card: dict, user_ids: list[str] | None = None) -> SendResult: ...

    def appchat_create(self, chat_id: str, name: str, owner: str, user_ids: list[str]) -> SendResult: ...

    def appchat_update(self, chat_id: str, name: str | None = None, owner: str | None = None,
                       add_user_list: list[str] | None = None,
                       del_user_list: list[str] | None = None) -> SendResult: ...

    def appchat_get(self, chat_id: str) -> dict: ...

    def appchat_send_text(self, chat_id: str, text: str) -> SendResult: ...


# --- what a platform can do to a group ---------------------------------------------------------


@dataclass(frozen=True)
class GroupInfo:
    """One group as a platform lists it (the sync job)."""
    chat_id: str
    name: str
    owner: str | None = None
    member_ids: tuple[str, ...] | None = None  # None: not listed with the group (ask group_members)


@runtime_checkable
class GroupOps(Protocol):
    """What a platform's sender does to a group: the lifecycle's platform steps (soft dissolve:
    notice, remove, rename; restore: add, rename back; purge: disband), the sync job and 建群.
    Errors as the send methods: ``TransientSendError`` (try later), ``PermanentSendError``.
    A platform implements the methods its ``Capabilities`` declare; the others raise
    ``PermanentSendError``."""

    def group_notice(self, chat_id: str, text: str) -> SendResult: ...

    def group_members(self, chat_id: str) -> set[str] | None:
        """The members as the platform lists them now (None: it cannot say)."""
        ...

    def group_remove(self, chat_id: str, user_ids: list[str]) -> SendResult: ...

    def group_add(self, chat_id: str, user_ids: list[str]) -> SendResult: ...

    def group_rename(self, chat_id: str, name: str) -> SendResult: ...

    def group_disband(self, chat_id: str) -> SendResult:
        """The real disband (the purge), where the platform has one. "Already dissolved" is
        ``GroupGone`` (or an errcode in the sender's ``gone_errcodes``): the purge counts it done."""
        ...

    def group_create(self, name: str, owner: str, user_ids: list[str]) -> str:
        """Create a group with ``owner`` as its owner; the new chat id."""
        ...

    def list_groups(self) -> list[GroupInfo]:
        """The groups the bot is in (paginated and rate-limited inside)."""
        ...


# Capabilities (what the bot can do to a group on a platform) are plain data, shared with storage:
# ``governance.capabilities``; each platform declares its instance in its folder.


# --- what the web app gives the inbound adapters -------------------------------------------------
class DeadlineMissed(Exception):
    """The event was not committed within the platform's reply deadline: answer the platform's
    retry signal (503) so it sends the event again; the dedupe absorbs the repeat."""


DEFAULT_REPLY_DEADLINE = 4.0  # seconds, for an event of a platform no registered platform owns


class Inbox(Protocol):
    """Where an inbound adapter hands its events: the web app's ``bot.runtime.Runtime``, found at
    ``request.app.state.runtime`` (``platforms.common.inbox``)."""
    settings: "Settings"
    db: Any                           # storage.db.Database (replies queued in the outbox)
    clock: Callable[[], datetime]

    async def process_async(self, event: "Event", *, deadline: float | None = None,
                            reply_channel: str | None = None) -> list["Reply"]:
        """The replies once the event is stored; ``DeadlineMissed`` when it is not stored within
        ``deadline`` (None: the deadline of the event's platform)."""
        ...


# --- a platform ------------------------------------------------------------------------------------
@runtime_checkable
class Platform(Protocol):
    name: str                       # registry name, e.g. "wecom"
    title: str                      # in Chinese, for people: "企业微信自建应用"
    channels: tuple[str, ...]       # outbox channels its sender delivers
    capabilities: Capabilities      # what it can do to a group it runs
    reply_deadline: float           # seconds an inbound request waits for its event to be stored

    @property
    def router(self) -> Any: ...    # the FastAPI router of its inbound endpoints

    @property
    def fast_routes(self) -> list: ...  # ``(path, endpoint, methods)`` routed first (bot/routes.py)

    def owns(self, platform: str | None) -> bool:
        """Whether an event's or a group's ``platform`` value is this platform's."""
        ...

    def configured(self, settings: "Settings") -> bool: ...

    def sender(self, settings: "Settings") -> Sender | None:
        """Its outbound sender, or None when it sends nothing with these settings."""
        ...

    def describe(self, settings: "Settings", *, host: str, port: int) -> str:
        """One line in Chinese for ``qunzhi serve``: configured or not, what it receives and sends."""
        ...


class PlatformBase:
    """The usual shape of a platform: the inbound module named by ``inbound`` (its ``router`` and
    ``FAST_ROUTES``), imported when the app mounts it; ``owns`` matches ``name``."""
    name: str = ""
    title: str = ""
    inbound: str = ""               # module with ``router`` and optionally ``FAST_ROUTES``
    channels: tuple[str, ...] = ()
    capabilities: Capabilities = ORDER_CAPS
    reply_deadline: float = DEFAULT_REPLY_DEADLINE

    @property
    def router(self):
        return importlib.import_module(self.inbound).router

    @property
    def fast_routes(self) -> list:
        return list(getattr(importlib.import_module(self.inbound), "FAST_ROUTES", ()))

    def owns(self, platform: str | None) -> bool:
        return platform == self.name

    def configured(self, settings: "Settings") -> bool:
        raise NotImplementedError

    def capabilities_for(self, settings: "Settings") -> Capabilities:
        """Its capabilities with these settings (Feishu: the activity its scopes let it see)."""
        return self.capabilities

    def acts(self, settings: "Settings") -> bool:
        """It can carry out its own dissolution method here (configured, and able to send where the
        method sends); otherwise a group of it gets an order to its owner."""
        return self.configured(settings)

    def sender(self, settings: "Settings") -> Sender | None:
        return None

    def describe(self, settings: "Settings", *, host: str, port: int) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<platform {self.name}>"


def startup_line(title: str, configured: bool, receives: str, sends: str, *, missing: str = "") -> str:
    """``企业微信自建应用：已配置；接收……；发送……。`` (or what is missing, and that it does nothing)."""
    if not configured:
        return f"{title}：未配置{f'（需要 {missing}）' if missing else ''}，不接收也不发送。"
    return f"{title}：已配置；接收{receives}；发送{sends}。"
