"""One settings object for the whole service (environment prefix ``QUNZHI_``)."""
from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDERS = {"", "changeme", "change-me", "changethis", "secret", "placeholder", "xxx", "test", "todo"}

DEFAULT_PROTECTED_CATEGORIES = ("领导班子群", "机关群", "脱贫攻坚群")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUNZHI_", env_file=".env", extra="ignore")

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
    restore_days: int = 30
    keep_days: int = 90
    unregistered_grace_days: int = 7

    # attention budget and working time
    weekly_message_budget: int = 2
    work_start: str = "09:00"
    work_end: str = "17:30"
    useless_votes_min: int = 3

    # a ledger workbook (xlsx/ods, a zip) that inflates past this many bytes is refused before it is read
    import_max_unzipped_bytes: int = 256 * 1024 * 1024

    run_scheduler: bool = True
    # process: callbacks are stored by a writer process beside the web process (bot/writer.py);
    # thread: by writer threads inside it (one interpreter lock for both, slower under load).
    ingest_writer: Literal["process", "thread"] = "process"

    @field_validator("protected_categories", "temporary_categories", mode="before")
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
        bad = [n for n in required if getattr(self, n).strip().lower() in PLACEHOLDERS or len(getattr(self, n)) < 8]
        if bad:
            names = ", ".join("QUNZHI_" + b.upper() for b in bad)
            raise ValueError(
                f"拒绝启动：非开发环境中以下密钥为空或为占位值，请设置真实值：{names} "
                f"(refusing to start: empty or placeholder secrets outside development: {names})"
            )
        return self

    @property
    def wecom_configured(self) -> bool:
        return bool(self.wecom_corp_id and self.wecom_token and self.wecom_aes_key)

    @property
    def aibot_configured(self) -> bool:
        return bool(self.aibot_token and self.aibot_aes_key)

    @property
    def local_mode(self) -> bool:
        """No WeCom credentials: the local chat page is offered instead."""
        return not self.wecom_configured and not self.aibot_configured

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def pseudonym_secret(self) -> bytes:
        # Outside development QUNZHI_PSEUDONYM_KEY is required (see _refuse_placeholders): whoever
        # holds the admin token must not be able to recompute who voted.
        return (self.pseudonym_key or ("dev-pseudonym:" + self.database_url)).encode()


@lru_cache
def get_settings() -> Settings:
    return Settings()
