"""Every Chinese text the lifecycle sends: warnings, orders, dissolution and merge notices, the
messages posted in a group being dissolved or restored. Pure (no I/O): the callers pass the
names, dates and counts."""
from __future__ import annotations

from datetime import datetime

from governance.dates import fmt_date
from governance.model import Finding, GroupFacts
from governance.rules_activity import idle_since

DISSOLVED_PREFIX = "[已解散]"


def why(g, facts: GroupFacts | None, findings: list[Finding], now: datetime, today) -> str:
    """Why a group is warned, in one clause (``g``: its row; ``today``: the local date)."""
    kinds = {f.kind for f in findings}
    if "zombie" in kinds and (facts is not None and facts.activity_source == "counts"
                              or getattr(g, "activity_source", None) == "counts"):
        zombie = next(f for f in findings if f.kind == "zombie")  # counts: its own words, never "no work message"
        return (zombie.reasons[0] if zombie.reasons else "消息很少") + "（只看得到每日消息条数，看不到内容）"
    since = idle_since(facts) if facts is not None else None
    if "zombie" in kinds and since is not None:
        days = int((now - since).total_seconds() // 86400)
        s = f"已{days}天没有工作消息"
        if facts.last_message_at and facts.last_message_at > since and facts.ritual_count:
            s += f"（其间只有“收到”“签到”等留痕消息，累计{facts.ritual_count}条）"
        return s
    if "expired" in kinds:
        if g.done_at is not None:
            return "任务已标记完成"
        if g.expires_at is not None:
            return f"已于{fmt_date(g.expires_at, today)}到期"
    for f in findings:
        if f.reasons:
            return f.reasons[0]
    return "被治理规则标记"


def warning_to_owner(name: str, why_: str, *, due: str, restore_days: int, auto: bool, temporary: bool) -> str:
    if auto:
        tail = (f"如无异议，将于{due}解散，解散后{restore_days}天内可恢复。"
                f"需要保留请回复“保留 {name} 理由”。")
        if temporary:
            tail += f"如需延期请回复“续期 {name} 30天”。"
    else:
        tail = f"建议合并或清理，管理员会联系您；需要保留请回复“保留 {name} 理由”。"
    return f"您的“{name}”{why_}。{tail}"


def warning_to_member(name: str, why_: str, *, due: str, restore_days: int, owner: str) -> str:
    return (f"“{name}”{why_}，如无异议将于{due}解散，解散后{restore_days}天内可恢复。"
            f"如需继续使用请联系群主（{owner}）。")


def dissolve_order(name: str, day: str) -> str:
    return (f"“{name}”已到解散时间，但机器人无法直接操作该群。请于{day}前手动解散，"
            f"完成后回复“已解散 {name}”。逾期未处理将报送纪委监委。")


def dissolved(name: str, day: str) -> str:
    return f"“{name}”已解散。{day}前可恢复：回复“恢复 {name}”。"


def repeated_keep(name: str, unit: str | None, owner: str, count: int, reason: str) -> str:
    return f"“{name}”（{unit or '未填单位'}，群主{owner}）第{count}次被保留，理由：{reason}"


def order_overdue(name: str, unit: str | None, owner: str) -> str:
    return f"“{name}”（{unit or '未填单位'}，群主{owner}）的解散通知已逾期未执行。"


def merge_to_member(a: str, b: str) -> str:
    return f"“{a}”已合并到“{b}”，今后请在“{b}”沟通，“{a}”将解散。"


def merge_to_responsible(a: str, b: str) -> str:
    """The member list is unknown: whoever is responsible tells the members."""
    return (f"“{a}”已合并到“{b}”，“{a}”将解散。机器人不知道该群的成员，"
            f"请在群里告知成员今后在“{b}”沟通。")


def restore_manual(name: str) -> str:
    return f"“{name}”已恢复登记，但未能自动拉回成员，请手动邀请原成员入群。"


def dissolve_notice_in_group(restore_days: int) -> str:
    """Posted in an appchat group before its members are removed."""
    return f"本群已较长时间没有工作消息，现按治理安排解散。{restore_days}天内群主可恢复。"


def restored_notice_in_group(members: int) -> str:
    return f"本群已恢复，{members}位成员已重新加入。"


def dissolved_name(name: str) -> str:
    """The name an appchat group gets when dissolved (WeCom allows 50 characters)."""
    return (DISSOLVED_PREFIX + name)[:50]
