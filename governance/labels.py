"""Every word a user reads for an internal code, in Chinese, in one place.

Statuses, actions, finding kinds, notice and outbox kinds, roles, operators, platforms… are
stored as short Latin codes; no page, export, CLI table or chat reply shows such a code. They
all ask :func:`label` (or one of the small helpers below), which falls back to a Chinese
"unknown" wording rather than the code itself.

Also here: how dates are shown to users (local dates in the configured time zone), robust to
any date already stored (9999-12-31 or 0001-01-01 overflow a time zone conversion).

Pure: no I/O, the time zone is an argument.
"""
from __future__ import annotations

from datetime import date, datetime, timezone, tzinfo

from governance import rules

# Finding kinds: declared with their rule (governance.rules, the one registry a new rule joins).
FINDING_KINDS: dict[str, str] = dict(rules.LABELS)

GROUP_STATUSES = {
    "active": "正常",
    "warned": "已提醒待解散",
    "dissolving": "解散中",
    "dissolved": "已解散",
    "restoring": "恢复中",
    "purged": "已清除",
    "merged": "已合并",
}

# Lifecycle actions, sweep steps, finding suggestions and audit record actions.
ACTIONS = {
    "warn": "提醒",
    "unwarn": "撤销提醒",
    "warning_sent": "提醒已送达",
    "dissolve": "解散",
    "dissolve_intent": "开始解散",
    "dissolve_order": "通知群主解散",
    "dissolve_fallback": "改为通知群主解散",
    "order_escalate": "解散逾期上报",
    "escalate": "逾期上报",
    "purge": "清除",
    "purge_intent": "待平台解散",
    "create_request": "申请建群",
    "create_group": "建群",
    "create_failed": "建群失败",
    "create_uncertain": "建群结果不明",
    "resume": "继续执行",
    "merge": "合并",
    "review": "核查",
    "none": "无需处置",
    "keep": "保留",
    "veto": "保留",
    "renew": "续期",
    "done": "任务完成",
    "undo": "撤销操作",
    "restore": "恢复",
    "restore_done": "恢复完成",
    "finish": "完成解散",
    "protect": "设为受保护",
    "unprotect": "取消保护",
    "register": "登记",
    "import": "导入",
    "approve": "审批",
    "login_lockout": "登录锁定",
    "protect_request": "申请保护",
    "role_change": "变更角色",
    "link_account": "关联账号",
    "lookback": "回头看",
    "link": "台账对应",
    "link_reject": "台账核对：不是同一个群",
}

DISSOLVE_METHODS = {
    "appchat": "机器人移出成员并改名",
    "bridge": "桥接端解散",
    "order": "群主手动解散",
}
# The same, as a reply says what happens next (合并 …: "将解散（…）").
DISSOLVE_METHOD_REPLIES = {
    "appchat": "机器人将移出成员并改名",
    "bridge": "已通知桥接端解散",
    "order": "已通知群主手动解散",
}

# The platform steps of an appchat dissolution / restore (storage.lifecycle DISSOLVE_STEPS).
PLATFORM_STEPS = {
    "notice": "发送通知",
    "remove": "移出成员",
    "rename": "改名",
    "add": "拉回成员",
    "disband": "在平台上解散",
}

SWEEP_RESULTS = {
    "planned": "将执行",
    "done": "已执行",
    "skipped": "跳过",
    "pending": "进行中",
    "error": "出错",
}

# Notice kinds (storage.outbox.notify) and outbox kinds (storage.outbox.enqueue).
MESSAGE_KINDS = {
    "protect_granted": "保护已确认",
    "protect_request": "保护待确认",
    "warning": "解散提醒",
    "warning_member": "解散提醒（成员）",
    "expiry": "到期提醒",
    "digest": "汇总消息",
    "dissolve_order": "解散通知",
    "dissolved": "解散完成",
    "order_overdue": "解散逾期",
    "repeated_keep": "多次保留",
    "restore_manual": "需手动恢复",
    "merge": "合并通知",
    "lookback": "回头看",
    "pulse": "负担脉搏",
    "reply": "回复",
    "formalism": "匿名反映",
    "useless_review": "群被反映没用",
    "reconcile_review": "台账核对待确认",
    "card_update": "卡片更新",
    "bridge_dissolve": "桥接解散指令",
    "bridge_cancel": "桥接撤销指令",
    "group_created": "建群完成",
    "group_create_failed": "建群失败",
    "group_create_uncertain": "建群结果不明",
}

OUTBOX_STATUSES = {
    "pending": "待发送",
    "held": "暂缓",
    "claimed": "发送中",
    "sending": "发送中",
    "sent": "已发送",
    "dead": "发送失败",
    "uncertain": "发送结果不明",
    "unreachable": "无法送达",
    "merged": "已合并发送",
    "cancelled": "已撤回",
}

ROLES = {
    "cadre": "干部",
    "unit_admin": "单位管理员",
    "admin": "管理员",
    "commission": "纪委监委",
}

# Actors of audit records that are not persons.
OPERATORS = {
    "cli": "命令行",
    "import": "导入",
    "system": "系统",
    "system:sweep": "系统（定期清理）",
    "system:lookback": "系统（回头看）",
    "system:outbox": "系统（消息发送）",
    "system:bridge": "系统（桥接确认）",
    "system:platform": "系统（平台操作）",
    "system:sync": "系统（群同步）",
    "admin:dashboard": "管理员（看板）",
}

PLATFORMS = {
    "wecom": "企业微信",
    "aibot": "企业微信智能机器人",
    "wechat": "微信",
    "bridge": "桥接",
    "ledger": "台账导入",
    "local": "本地体验",
    "archive": "会话存档",
    "dingtalk": "钉钉",
    "feishu": "飞书",
    "qq": "QQ",
}

# What the bot sees of a group's traffic (groups.activity_source): "not seen" is not "silent".
ACTIVITY_SOURCES = {
    "full": "全部消息",
    "mentions": "仅@机器人的消息",
    "counts": "仅每日消息数",
    "archive": "会话存档导入",
    "none": "无活动数据",
}

FINDING_STATUSES = {"open": "待处理", "resolved": "已解决"}

# Why a ledger entry and a platform group were matched (``storage.reconcile``, governance.reconcile).
MATCH_BASES = {
    "name": "群名相同或相近",
    "members": "成员相同",
    "name+members": "群名和成员都相同",
    "confirmed": "管理员已确认",
}

# The weekly pulse's answers (本周工作群给您带来的负担？), stored as 1..3.
PULSE_ANSWERS: dict[int, str] = {1: "轻", 2: "适中", 3: "重"}

TABLES: dict[str, dict[str, str]] = {
    "kind": FINDING_KINDS,
    "status": GROUP_STATUSES,
    "action": ACTIONS,
    "method": DISSOLVE_METHODS,
    "method_reply": DISSOLVE_METHOD_REPLIES,
    "step": PLATFORM_STEPS,
    "result": SWEEP_RESULTS,
    "message": MESSAGE_KINDS,
    "outbox_status": OUTBOX_STATUSES,
    "role": ROLES,
    "operator": OPERATORS,
    "platform": PLATFORMS,
    "finding_status": FINDING_STATUSES,
    "activity_source": ACTIVITY_SOURCES,
    "match": MATCH_BASES,
}

UNKNOWN = {
    "kind": "其他问题",
    "status": "未知状态",
    "action": "其他操作",
    "method": "其他方式",
    "method_reply": "将按其他方式解散",
    "step": "其他步骤",
    "result": "未知结果",
    "message": "其他消息",
    "outbox_status": "未知状态",
    "role": "未知角色",
    "operator": "系统",
    "platform": "其他平台",
    "finding_status": "未知状态",
    "activity_source": "来源不明",
    "match": "其他依据",
}


def label(what: str, code: str | None) -> str:
    """The Chinese word for ``code`` in the table ``what`` (see :data:`TABLES`); an unknown code
    reads as a Chinese "unknown …" wording, never as the code."""
    table = TABLES[what]
    if code is None or code == "":
        return ""
    return table.get(code) or UNKNOWN[what]


def kind(code: str | None) -> str:
    return label("kind", code)


def status(code: str | None) -> str:
    return label("status", code)


def action(code: str | None) -> str:
    return label("action", code)


def role(code: str | None) -> str:
    return label("role", code)


def kinds(codes) -> str:
    """Several finding kinds, joined: 僵尸群、重复群."""
    return "、".join(kind(c) for c in codes)


def actor(code: str | None, names: dict[str, str | None] | None = None) -> str:
    """Who did it: a person's name when known, an operator's label (命令行, 系统…), otherwise
    the person id as stored (ids may stay Latin)."""
    if not code:
        return ""
    if names and names.get(code):
        return str(names[code])
    if code in OPERATORS:
        return OPERATORS[code]
    if code.startswith("system:") or code.startswith("admin:"):
        return UNKNOWN["operator"] if code.startswith("system:") else "管理员"
    return code


def method(code: str | None) -> str:
    return label("method", code)


def period_name(key: str) -> str:
    """A report or pulse period key as people say it: 2026-W47 → 2026年第47周, 2026-11 → 2026年11月."""
    y, _, rest = str(key).partition("-")
    if y.isdigit() and rest.startswith("W") and rest[1:].isdigit():
        return f"{int(y)}年第{int(rest[1:])}周"
    if y.isdigit() and rest.isdigit():
        return f"{int(y)}年{int(rest)}月"
    return "未知时段"


def audit_reason(action_code: str | None, reason: str | None, data: dict | None = None) -> str:
    """An audit record's reason as shown; a role change written before roles were labelled
    ("cadre → admin") reads in Chinese from its data."""
    if action_code == "role_change" and isinstance(data, dict) and data.get("new"):
        return f"{role(data.get('old')) or '无'} → {role(data.get('new'))}"
    return reason or ""


# --- dates shown to users ------------------------------------------------------------------------
def _ymd(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def local_dt(dt: datetime | None, tz: tzinfo) -> datetime | None:
    """``dt`` in the local time zone; a moment whose local time is not representable (near year 1
    or 9999) stays as stored (UTC) rather than failing."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        return dt.astimezone(tz)
    except (OverflowError, ValueError):
        return dt


def fmt_dt(dt: datetime | None, tz: tzinfo) -> str:
    """2026-11-22 10:00 in local time ('' for None); never fails on a stored date."""
    d = local_dt(dt, tz)
    return "" if d is None else f"{_ymd(d)} {d.hour:02d}:{d.minute:02d}"


def fmt_day(value: date | datetime | None, tz: tzinfo) -> str:
    """2026-11-22: a datetime's local date, or a date as it is ('' for None)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = local_dt(value, tz)
    return _ymd(value)
