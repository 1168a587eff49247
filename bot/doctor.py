"""``qunzhi doctor``: what is wrong with this installation, in Chinese, each with its fix.

Every check returns ``Check`` rows; nothing is changed (no migration, no message sent). A platform
check fetches a token from the configured base URL, the only call that proves the credentials.
"""
from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from config.settings import Settings

OK, WARN, ERROR = "ok", "warn", "error"
STATUS_LABELS = {OK: "正常", WARN: "注意", ERROR: "错误"}
CLOCK_TOLERANCE = timedelta(seconds=60)  # callbacks are refused outside QUNZHI_WECOM_TIMESTAMP_TOLERANCE


@dataclass(frozen=True)
class Check:
    area: str  # 配置 | 数据库 | 平台 | 时钟 | 节假日
    status: str  # ok | warn | error
    what: str  # what was found
    fix: str = ""  # what to do about it


def check_config(settings: Settings) -> list[Check]:
    out: list[Check] = []
    prod = not settings.development
    out.append(Check("配置", OK if prod else WARN, f"运行环境：{'生产' if prod else '开发'}（QUNZHI_ENVIRONMENT={settings.environment}）",
                     "" if prod else "正式使用请设置 QUNZHI_ENVIRONMENT=production，并配置真实密钥"))
    if not (settings.wecom_configured or settings.aibot_configured or settings.bridge_secret):
        out.append(Check("配置", ERROR if prod else WARN, "没有配置任何平台，机器人收不到也发不出消息",
                         "至少配置一个平台：企业微信自建应用（QUNZHI_WECOM_CORP_ID、QUNZHI_WECOM_TOKEN、QUNZHI_WECOM_AES_KEY、"
                         "QUNZHI_WECOM_SECRET），或智能机器人（QUNZHI_AIBOT_TOKEN、QUNZHI_AIBOT_AES_KEY），或桥接（QUNZHI_BRIDGE_SECRET）"))
    if settings.wecom_corp_id and not settings.wecom_agent_id:
        out.append(Check("配置", ERROR, "配置了企业微信但没有应用 AgentId，通知发不出去",
                         "在企业微信管理后台“应用管理”里查看应用的 AgentId，设置 QUNZHI_WECOM_AGENT_ID"))
    if settings.bridge_secret and not settings.bridge_url:
        out.append(Check("配置", ERROR, "配置了桥接密钥但没有桥接地址，解散等指令送不到桥接服务",
                         "设置 QUNZHI_BRIDGE_URL 为桥接服务接收指令的地址"))
    if prod and not settings.admin_token:
        out.append(Check("配置", ERROR, "没有管理令牌，看板无法登录", "设置 QUNZHI_ADMIN_TOKEN 为一个随机长字符串"))
    if not settings.backup_key:
        out.append(Check("配置", WARN, "没有备份密钥，无法执行 qunzhi backup",
                         "设置 QUNZHI_BACKUP_KEY（至少 16 个字符），并与备份文件分开保管"))
    base = urlsplit(settings.public_base_url)
    if prod and base.scheme != "https":
        out.append(Check("配置", WARN, f"对外地址不是 https：{settings.public_base_url}",
                         "看板登录和通知里的链接应走 https：设置 QUNZHI_PUBLIC_BASE_URL=https://…（由 nginx 终止 TLS）"))
    if settings.county_name == "本县":
        out.append(Check("配置", WARN, "没有设置县名，周报标题会显示“本县”", "设置 QUNZHI_COUNTY_NAME，如 鹤峰县"))
    if not any(c.status != OK for c in out[1:]):
        out.append(Check("配置", OK, "密钥和地址齐全"))
    return out


def check_database(settings: Settings) -> list[Check]:
    from storage.db import alembic_config, make_engine

    try:
        engine = make_engine(settings.database_url)
    except Exception as e:  # a malformed URL or a missing driver: report it, do not crash the doctor
        return [Check("数据库", ERROR, f"数据库地址无效：{type(e).__name__}: {e}", "检查 QUNZHI_DATABASE_URL")]
    try:
        with engine.connect() as c:
            current = MigrationContext.configure(c).get_current_revision()
            skew = None
            if c.dialect.name == "postgresql":
                server_now = c.execute(text("SELECT now()")).scalar()
                skew = abs(server_now - datetime.now(timezone.utc))
    except Exception as e:  # unreachable server, refused login, unreadable file
        return [Check("数据库", ERROR, f"连不上数据库：{type(e).__name__}: {str(e).splitlines()[0][:300]}",
                      "检查 QUNZHI_DATABASE_URL、数据库服务是否在运行、用户名和权限")]
    finally:
        engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()
    out = []
    if current is None:
        out.append(Check("数据库", WARN, "数据库是空的，还没有建表", "运行 qunzhi serve 或任何 qunzhi 命令会自动建表"))
    elif current != head:
        out.append(Check("数据库", ERROR, f"数据库版本 {current} 不是最新的 {head}",
                         "先备份（qunzhi backup），再运行一次 qunzhi serve 或 qunzhi scan 自动升级"))
    else:
        out.append(Check("数据库", OK, f"已连接，版本为最新（{head}）"))
    if skew is not None and skew > CLOCK_TOLERANCE:
        out.append(Check("时钟", ERROR, f"本机时钟与数据库服务器相差 {int(skew.total_seconds())} 秒",
                         "两台机器都开启 NTP 时间同步（timedatectl set-ntp true 或 chrony）"))
    return out


def check_platforms(settings: Settings, *, timeout: float = 5.0) -> list[Check]:
    from platforms.base import SendError
    from platforms.wecom.sender import WeComSender

    out: list[Check] = []
    if settings.wecom_corp_id and settings.wecom_secret:
        try:
            WeComSender(settings, timeout=timeout).refresh_token()
            out.append(Check("平台", OK, f"企业微信：已从 {settings.wecom_api_base} 取得访问令牌"))
        except SendError as e:
            out.append(Check("平台", ERROR, f"企业微信：取访问令牌失败（{e}）",
                             "核对 QUNZHI_WECOM_CORP_ID 与 QUNZHI_WECOM_SECRET（应用的 Secret），"
                             f"并确认本机能访问 {settings.wecom_api_base}（政务版填其内网地址 QUNZHI_WECOM_API_BASE）"))
    if settings.bridge_url:
        out.append(_reachable("桥接服务", settings.bridge_url, timeout))
    if not out:
        out.append(Check("平台", OK, "没有需要联网验证的平台凭据"))
    return out


def _reachable(name: str, url: str, timeout: float) -> Check:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return Check("平台", OK, f"{name}：{parts.hostname}:{port} 可以连通")
    except OSError as e:
        return Check("平台", ERROR, f"{name}：连不上 {parts.hostname}:{port}（{e.strerror or e}）",
                     f"确认{name}已启动，地址 {url} 正确，防火墙放行")


def check_calendar(settings: Settings, now: datetime) -> list[Check]:
    from governance.worktime import package_covers

    local = now.astimezone(settings.tz)
    out = [Check("时钟", OK, f"时区 {settings.timezone}，本地时间 {local:%Y-%m-%d %H:%M}")]
    schedules = settings.holiday_schedules
    for year in (local.year, local.year + 1):
        if package_covers(year) or year in schedules:
            out.append(Check("节假日", OK, f"{year} 年的法定节假日安排已知"))
        elif year == local.year or local.month >= 11:  # the State Council publishes next year's in November
            out.append(Check("节假日", WARN if year > local.year else ERROR,
                             f"{year} 年的法定节假日和调休安排未知：只能按周末和农历推算，调休上班日会被当成休息日",
                             "国务院办公厅公布安排后，按 README 的格式写一个 JSON 文件，设置 QUNZHI_HOLIDAY_SCHEDULE 指向它"))
    return out


CHECKS: tuple[Callable[..., list[Check]], ...] = (check_config, check_database, check_platforms)


def run_checks(settings: Settings, now: datetime | None = None) -> list[Check]:
    now = now or datetime.now(timezone.utc)
    rows: list[Check] = []
    for check in CHECKS:
        rows += check(settings)
    return rows + check_calendar(settings, now)
