"""One settings object for the whole service (environment prefix ``QUNZHI_``)."""
from __future__ import annotations

import json
import ipaddress
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from dataclasses import dataclass

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDERS = {"", "changeme", "change-me", "changethis", "secret", "placeholder", "xxx", "test", "todo"}

AES_KEY = re.compile(r"[A-Za-z0-9+/]{43}")  # WeCom's EncodingAESKey: 32 bytes, base64 without the "="

DEFAULT_PROTECTED_CATEGORIES = ("领导班子群", "机关群", "脱贫攻坚群")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUNZHI_", env_file=".env", extra="ignore", populate_by_name=True)

    environment: str = "development"  # development | production
    database_url: str = "sqlite:///./qunzhi.db"

    wecom_corp_id: str = ""
    wecom_token: str = ""
    wecom_aes_key: str = ""
    wecom_agent_id: str = ""
    wecom_secret: str = ""
    wecom_api_base: str = "https://qyapi.weixin.qq.com/cgi-bin/"
    wecom_timestamp_tolerance: int = 300

    aibot_token: str = ""
    aibot_aes_key: str = ""
    # Feishu / Lark (platforms/feishu): the self-built app's credentials, its event-callback keys,
    # the API host (open.feishu.cn, open.larksuite.com or a private deployment's), the user id type
    # its events and calls use, and whether the app holds im:message.group_msg (every group message)
    feishu_app_id: str = ""
    feishu_app_secret: str = ""
    feishu_encrypt_key: str = ""
    feishu_verification_token: str = ""
    feishu_domain: str = "https://open.feishu.cn"
    feishu_id_type: Literal["open_id", "union_id", "user_id"] = "open_id"
    feishu_group_msg_scope: bool = False
    feishu_bot_open_id: str = ""  # the bot's open_id: tells @-mentions of it apart when every message arrives

    # DingTalk (钉钉) enterprise-internal app with a robot (platforms/dingtalk/README.md)
    dingtalk_app_key: str = ""        # AppKey (Client ID); also the robot code when it is left empty
    dingtalk_app_secret: str = ""     # AppSecret (Client Secret): signs the robot callback, fetches tokens
    dingtalk_robot_code: str = ""
    dingtalk_corp_id: str = ""        # CorpId: the receive id of the event-subscription crypto
    dingtalk_callback_token: str = ""  # event subscription: 签名 token
    dingtalk_callback_aes_key: str = ""  # event subscription: 加密 aes_key (43 characters)
    dingtalk_api_base: str = "https://api.dingtalk.com"    # new OpenAPI (/v1.0/...)
    dingtalk_oapi_base: str = "https://oapi.dingtalk.com"  # classic API (/topapi/...)
    dingtalk_stream: bool = False     # Stream mode (no public URL): `qunzhi serve` opens the connection
    dingtalk_timestamp_tolerance: int = 600  # seconds; DingTalk allows an hour, Qunzhi is tighter
    dingtalk_scene_template_id: str = ""  # scene-group template (建群 creates scene groups from it)
    dingtalk_card_template_id: str = "StandardCard"
    dingtalk_exclusive: bool = False  # 专属钉钉: import per-group daily message counts (activeGroups)
    dingtalk_operator_user_id: str = ""  # an admin's userid, required by orgGroupInfos (last-active times)
    bridge_secret: str = ""
    bridge_url: str = ""  # where signed instructions to the bridge are POSTed (dissolve, restore)
    admin_token: str = ""

    timezone: str = "Asia/Shanghai"
    county_name: str = "本县"  # shown in digest titles, e.g. 鹤峰县
    store_message_text: bool = False
    max_body_bytes: int = 64 * 1024
    pseudonym_key: str = ""  # keyed pseudonyms for anonymous feedback; derived from admin_token when empty
    public_base_url: str = "http://127.0.0.1:8000"

    # comma-separated in the environment: QUNZHI_PROTECTED_CATEGORIES=领导班子群,机关群
    protected_categories: Annotated[tuple[str, ...], NoDecode] = DEFAULT_PROTECTED_CATEGORIES
    temporary_categories: Annotated[tuple[str, ...], NoDecode] = ("临时群", "专班群", "临时专班")

    # governance parameters (see governance.model.Params)
    zombie_days: int = 30
    duplicate_jaccard: float = 0.8
    overlap_containment: float = 0.9
    max_groups_per_person: int = 20
    grace_days: int = 7
    # a group known only by daily message counts (专属钉钉): at most this many in zombie_days is idle
    counts_idle_messages: int = 10
    restore_days: int = 30
    keep_days: int = 90
    unregistered_grace_days: int = 7

    # attention budget and working time
    weekly_message_budget: int = 2
    work_start: str = "09:00"
    work_end: str = "17:30"
    # JSON file with official holiday schedules for years the chinesecalendar package does not cover
    # yet: {"2027": {"holidays": ["2027-01-01", "2027-02-05..2027-02-11"], "workdays": ["2027-02-14"]}}
    holiday_schedule: str = ""
    useless_votes_min: int = 3

    # proxies whose X-Forwarded-For hop names the client (login lockout per address), e.g.
    # QUNZHI_TRUSTED_PROXIES=127.0.0.1,10.0.0.0/8; nobody else's header is believed
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()

    # slow clients (bot/server.py): seconds a request gets to send its headers, then its body;
    # open connections at once (never more than half the process's descriptor limit)
    http_header_timeout: float = 10.0
    http_body_timeout: float = 30.0
    http_max_connections: int = 1000

    # key of the encrypted archives of ``qunzhi backup`` / ``qunzhi restore`` (16+ characters; keep it
    # apart from the backups: whoever has both has the personal data in them)
    backup_key: str = ""

    # a ledger workbook (xlsx/ods, a zip) that inflates past this many bytes is refused before it is read
    import_max_unzipped_bytes: int = 256 * 1024 * 1024

    # prometheus-client's multiprocess directory for /metrics (one per instance; `qunzhi serve`
    # makes a private one when empty)
    metrics_dir: str = ""

    run_scheduler: bool = True
    # process: callbacks are stored by a writer process beside the web process (bot/writer.py);
    # thread: by writer threads inside it (one interpreter lock for both, slower under load).
    ingest_writer: Literal["process", "thread"] = "process"
    # group commit (bot/runtime.py): events per transaction, writer shards (None: per dialect),
    # bulk statements for plain activity, batches in flight per writer-process lane
    group_commit: bool = True
    group_commit_max: int = 128
    group_commit_writers: int | None = None
    bulk_ingest: bool = True
    writer_pipeline: int = 2

    # CA bundle for outbound HTTPS (the requests convention's variables are honoured too)
    ca_bundle: str = Field("", validation_alias=AliasChoices("QUNZHI_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"))

    @field_validator("group_commit", "bulk_ingest", "group_commit_max", "group_commit_writers", "writer_pipeline",
                     mode="before")
    @classmethod
    def _empty_is_default(cls, v, info):
        # QUNZHI_GROUP_COMMIT= (set but empty) means the default, as it always did
        if isinstance(v, str) and not v.strip():
            return cls.model_fields[info.field_name].default
        return v

    @field_validator("group_commit_max", "writer_pipeline")
    @classmethod
    def _at_least_one(cls, v: int) -> int:
        return max(1, v)

    @property
    def ingest(self) -> "IngestSettings":
        return IngestSettings(writer=self.ingest_writer, group_commit=self.group_commit,
                              group_commit_max=self.group_commit_max, group_commit_writers=self.group_commit_writers,
                              bulk=self.bulk_ingest, pipeline=self.writer_pipeline)

    @field_validator("protected_categories", "temporary_categories", "trusted_proxies", mode="before")
    @classmethod
    def _split(cls, v):
        if isinstance(v, str):
            return tuple(x.strip() for x in v.replace("，", ",").split(",") if x.strip())
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        ZoneInfo(v)  # raises on an unknown zone
        return v

    @field_validator("http_header_timeout", "http_body_timeout", "http_max_connections")
    @classmethod
    def _positive(cls, v, info):
        name = "QUNZHI_" + info.field_name.upper()
        if info.field_name == "http_max_connections" and v < 8:
            raise ValueError(f"拒绝启动：{name} 不得小于 8（当前为 {v}） (refusing to start: {name} must be >= 8, got {v})")
        if v <= 0:
            raise ValueError(f"拒绝启动：{name} 必须大于 0 秒（当前为 {v}） (refusing to start: {name} must be > 0, got {v})")
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = []
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                bad.append(item)
        if bad:
            names = "、".join(bad)
            raise ValueError(
                f"拒绝启动：QUNZHI_TRUSTED_PROXIES 只能写 IP 地址或网段（如 10.0.0.1、10.0.0.0/8），以下无效：{names} "
                f"(refusing to start: QUNZHI_TRUSTED_PROXIES entries must be IP addresses or networks: {bad})"
            )
        return v

    @field_validator("dingtalk_timestamp_tolerance")
    @classmethod
    def _dingtalk_window(cls, v: int) -> int:
        # DingTalk's own rule refuses a sign more than an hour off: never wider than that
        return max(1, min(3600, v))

    @field_validator("wecom_aes_key", "aibot_aes_key", "dingtalk_callback_aes_key")
    @classmethod
    def _aes_key(cls, v: str, info) -> str:
        # Checked in every environment: a malformed key would otherwise answer 500 on every callback.
        if v and not AES_KEY.fullmatch(v):
            name = "QUNZHI_" + info.field_name.upper()
            raise ValueError(
                f"拒绝启动：{name} 必须是企业微信后台给出的 43 位 EncodingAESKey（字母和数字），当前为 {len(v)} 位或含其他字符 "
                f"(refusing to start: {name} must be 43 base64 characters, got {len(v)} characters or invalid ones)"
            )
        return v

    @field_validator("feishu_domain")
    @classmethod
    def _feishu_domain(cls, v: str) -> str:
        # What lark-oapi accepts (its Client refuses anything else): an https origin, or http on
        # loopback (the fake in tests). Checked here so a bad value stops the start, not the sender.
        from urllib.parse import urlsplit

        v = v.strip().rstrip("/")
        u = urlsplit(v)
        loopback = u.scheme == "http" and (u.hostname or "") in ("127.0.0.1", "localhost", "::1")
        if not ((u.scheme == "https" or loopback) and u.netloc and "@" not in u.netloc
                and not (u.path or u.query or u.fragment)):
            raise ValueError(
                "拒绝启动：QUNZHI_FEISHU_DOMAIN 须为开放平台地址，如 https://open.feishu.cn 或 https://open.larksuite.com"
                f"（只写协议和主机，不带路径），当前为 {v!r} "
                f"(refusing to start: QUNZHI_FEISHU_DOMAIN must be an https origin, got {v!r})")
        return v

    @model_validator(mode="after")
    def _pseudonym_key_apart(self):
        """Whoever holds the admin token must not be able to recompute who voted (every environment)."""
        key, token = self.pseudonym_key.strip().casefold(), self.admin_token.strip().casefold()
        if key and token and (key in token or token in key):
            raise ValueError(
                "拒绝启动：QUNZHI_PSEUDONYM_KEY 不得与 QUNZHI_ADMIN_TOKEN 相同、包含或被包含，请另行生成一个随机密钥 "
                "(refusing to start: QUNZHI_PSEUDONYM_KEY equals, contains or is contained in QUNZHI_ADMIN_TOKEN)"
            )
        return self

    @model_validator(mode="after")
    def _check_holiday_schedule(self):
        if self.holiday_schedule:
            load_holiday_schedule(self.holiday_schedule)  # raises ValueError with the reason in Chinese
        return self

    @property
    def holiday_schedules(self) -> dict:
        """The parsed ``QUNZHI_HOLIDAY_SCHEDULE`` (read once per process; ``{}`` without one)."""
        return load_holiday_schedule(self.holiday_schedule) if self.holiday_schedule else {}

    @model_validator(mode="after")
    def _refuse_placeholders(self):
        if self.environment == "development":
            return self
        required = ["admin_token", "pseudonym_key"]  # the pseudonym key must not derive from the admin token
        if self.wecom_corp_id:
            required += ["wecom_token", "wecom_aes_key", "wecom_secret"]
        if self.aibot_token or self.aibot_aes_key:
            required += ["aibot_token", "aibot_aes_key"]
        if self.bridge_secret:
            required.append("bridge_secret")
        if self.feishu_app_id or self.feishu_encrypt_key or self.feishu_verification_token:
            required += ["feishu_encrypt_key", "feishu_verification_token"]
        if self.feishu_app_id:
            required.append("feishu_app_secret")
        if self.dingtalk_app_key:
            required.append("dingtalk_app_secret")
        if self.dingtalk_callback_token or self.dingtalk_callback_aes_key:
            required += ["dingtalk_callback_token", "dingtalk_callback_aes_key", "dingtalk_corp_id"]
        bad = [n for n in required if getattr(self, n).strip().lower() in PLACEHOLDERS or len(getattr(self, n)) < 8]
        if bad:
            names = ", ".join("QUNZHI_" + b.upper() for b in bad)
            raise ValueError(
                f"拒绝启动：非开发环境中以下密钥为空或为占位值，请设置真实值：{names} "
                f"(refusing to start: empty or placeholder secrets outside development: {names})"
            )
        return self

    # --- grouped per platform (read-only views of the flat fields above) ---------------------------
    # The environment names stay flat (QUNZHI_WECOM_TOKEN …, as documented); these views group them
    # for the platform folders. They live here, not in platforms/<name>/, because config is below
    # platforms in the layers and may not import it.
    @property
    def wecom(self) -> "WeComSettings":
        return WeComSettings(corp_id=self.wecom_corp_id, token=self.wecom_token, aes_key=self.wecom_aes_key,
                             agent_id=self.wecom_agent_id, secret=self.wecom_secret, api_base=self.wecom_api_base,
                             timestamp_tolerance=self.wecom_timestamp_tolerance)

    @property
    def aibot(self) -> "AibotSettings":
        return AibotSettings(token=self.aibot_token, aes_key=self.aibot_aes_key,
                             timestamp_tolerance=self.wecom_timestamp_tolerance)

    @property
    def bridge(self) -> "BridgeSettings":
        return BridgeSettings(secret=self.bridge_secret, url=self.bridge_url,
                              timestamp_tolerance=self.wecom_timestamp_tolerance)

    @property
    def feishu(self) -> "FeishuSettings":
        return FeishuSettings(app_id=self.feishu_app_id, app_secret=self.feishu_app_secret,
                              encrypt_key=self.feishu_encrypt_key, verification_token=self.feishu_verification_token,
                              domain=self.feishu_domain.rstrip("/"), id_type=self.feishu_id_type,
                              group_msg_scope=self.feishu_group_msg_scope, bot_open_id=self.feishu_bot_open_id,
                              timestamp_tolerance=self.wecom_timestamp_tolerance)

    @property
    def dingtalk(self) -> "DingTalkSettings":
        return DingTalkSettings(
            app_key=self.dingtalk_app_key, app_secret=self.dingtalk_app_secret,
            robot_code=self.dingtalk_robot_code or self.dingtalk_app_key, corp_id=self.dingtalk_corp_id,
            callback_token=self.dingtalk_callback_token, callback_aes_key=self.dingtalk_callback_aes_key,
            api_base=self.dingtalk_api_base.rstrip("/"), oapi_base=self.dingtalk_oapi_base.rstrip("/"),
            stream=self.dingtalk_stream, timestamp_tolerance=self.dingtalk_timestamp_tolerance,
            scene_template_id=self.dingtalk_scene_template_id, card_template_id=self.dingtalk_card_template_id,
            exclusive=self.dingtalk_exclusive, operator_user_id=self.dingtalk_operator_user_id)

    @property
    def development(self) -> bool:
        return self.environment == "development"

    @property
    def wecom_configured(self) -> bool:
        return self.wecom.configured

    @property
    def aibot_configured(self) -> bool:
        return self.aibot.configured

    @property
    def local_mode(self) -> bool:
        """The settings' half of the local-mode rule: development and no WeCom credentials.

        The page is served only when the server also listens on a loopback address
        (``local_mode_on``): anyone who reaches it can act as any seeded person, the admin included.
        """
        return self.development and not self.wecom_configured and not self.aibot_configured

    def local_mode_on(self, bind_host: str | None) -> bool:
        """Local mode really on: development, no credentials, and bound to a loopback address."""
        return self.local_mode and is_loopback(bind_host)

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(x, strict=False) for x in self.trusted_proxies)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def pseudonym_secret(self) -> bytes:
        # Outside development QUNZHI_PSEUDONYM_KEY is required (see _refuse_placeholders): whoever
        # holds the admin token must not be able to recompute who voted.
        return (self.pseudonym_key or ("dev-pseudonym:" + self.database_url)).encode()


@dataclass(frozen=True)
class IngestSettings:
    """How callbacks are stored (``QUNZHI_INGEST_WRITER``, ``QUNZHI_GROUP_COMMIT*``, ``QUNZHI_BULK_INGEST``,
    ``QUNZHI_WRITER_PIPELINE``)."""
    writer: str
    group_commit: bool
    group_commit_max: int
    group_commit_writers: int | None
    bulk: bool
    pipeline: int


# --- settings grouped per platform ------------------------------------------------------------------
# Read-only views built by ``Settings.wecom`` / ``.aibot`` / ``.bridge`` from the flat fields; the
# environment names do not change. (In config, not in the platform folders: config may not import
# platforms.)
@dataclass(frozen=True)
class WeComSettings:
    """The WeCom self-built app (``QUNZHI_WECOM_*``)."""
    corp_id: str
    token: str
    aes_key: str
    agent_id: str
    secret: str
    api_base: str
    timestamp_tolerance: int

    @property
    def configured(self) -> bool:
        """Callbacks can be verified (corp id, token and AES key)."""
        return bool(self.corp_id and self.token and self.aes_key)

    @property
    def sends(self) -> bool:
        """Messages can go out too (the app secret fetches the access token)."""
        return self.configured and bool(self.secret)


@dataclass(frozen=True)
class AibotSettings:
    """The WeCom AI bot (``QUNZHI_AIBOT_TOKEN``, ``QUNZHI_AIBOT_AES_KEY``; the callback window is
    ``QUNZHI_WECOM_TIMESTAMP_TOLERANCE``)."""
    token: str
    aes_key: str
    timestamp_tolerance: int

    @property
    def configured(self) -> bool:
        return bool(self.token and self.aes_key)


@dataclass(frozen=True)
class BridgeSettings:
    """The signed bridge (``QUNZHI_BRIDGE_SECRET``, ``QUNZHI_BRIDGE_URL``)."""
    secret: str
    url: str
    timestamp_tolerance: int

    @property
    def configured(self) -> bool:
        """Events are accepted (the secret signs both directions)."""
        return bool(self.secret)

    @property
    def sends(self) -> bool:
        """Instructions can be POSTed to the bridge (its URL is set too)."""
        return bool(self.secret and self.url)


@dataclass(frozen=True)
class DingTalkSettings:
    """The DingTalk app and robot (``QUNZHI_DINGTALK_*``)."""
    app_key: str
    app_secret: str
    robot_code: str
    corp_id: str
    callback_token: str
    callback_aes_key: str
    api_base: str
    oapi_base: str
    stream: bool
    timestamp_tolerance: int
    scene_template_id: str
    card_template_id: str
    exclusive: bool
    operator_user_id: str

    @property
    def configured(self) -> bool:
        """The robot's callbacks can be verified and messages sent (app key and secret)."""
        return bool(self.app_key and self.app_secret)

    @property
    def events(self) -> bool:
        """Event-subscription callbacks can be decrypted (token, AES key, corp id)."""
        return bool(self.callback_token and self.callback_aes_key and self.corp_id)


@lru_cache(maxsize=8)
@dataclass(frozen=True)
class FeishuSettings:
    """The Feishu / Lark self-built app (``QUNZHI_FEISHU_*``; the callback window is
    ``QUNZHI_WECOM_TIMESTAMP_TOLERANCE``, the same for every platform)."""
    app_id: str
    app_secret: str
    encrypt_key: str
    verification_token: str
    domain: str             # https://open.feishu.cn | https://open.larksuite.com | a private host
    id_type: str            # open_id | union_id | user_id: how persons are named in events and calls
    group_msg_scope: bool   # the app holds im:message.group_msg: every group message arrives
    bot_open_id: str        # the bot's open_id (GET /open-apis/bot/v3/info), for @-mentions with that scope
    timestamp_tolerance: int

    @property
    def configured(self) -> bool:
        """Callbacks can be verified and decrypted (Encrypt Key and Verification Token): unsigned,
        unencrypted callbacks are never accepted."""
        return bool(self.encrypt_key and self.verification_token)

    @property
    def sends(self) -> bool:
        """Messages and group operations can go out (app id and secret fetch tenant_access_token)."""
        return self.configured and bool(self.app_id and self.app_secret)

    @property
    def activity(self) -> str:
        """What the bot sees of a group's traffic (``governance.labels.ACTIVITY_SOURCES``)."""
        return "full" if self.group_msg_scope else "mentions"


def load_holiday_schedule(path: str) -> dict:
    """Read and parse an operator's holiday schedule file (see ``governance.worktime.parse_schedule``)."""
    from governance.worktime import ScheduleError, parse_schedule

    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"找不到节假日安排文件 QUNZHI_HOLIDAY_SCHEDULE={path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"节假日安排文件 {path} 无法读取：{e}") from None
    try:
        return parse_schedule(data)
    except ScheduleError as e:
        raise ValueError(f"节假日安排文件 {path} 有误：{e}") from None


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or "localhost"; an unknown bind host (None) is not loopback."""
    if not host:
        return False
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


@lru_cache
def get_settings() -> Settings:
    return Settings()
