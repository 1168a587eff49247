"""Summaries for discipline commissions (纪委监委): the weekly/monthly report, its chat digest,
the Excel ledger (台账) and the daily figures (stat_snapshots) behind the dashboard trends.

Everything reads the database as it is at ``now``; a period is the last *complete* calendar
week (Monday–Sunday) or month before ``now`` in the county's time zone.
"""
from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, BinaryIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from governance import labels, rules
from storage.feedback import FEW_VOTES, shown_votes
from storage.models import (AuditRecord, FindingRecord, FormalismReport, Group, Membership, OutboxMessage,
                            Person, PulseResponse, StatSnapshot, UselessVote)
from storage.outbox import enqueue, person_channel

LIVE = ("active", "warned")
MIN_FEEDBACK = 5  # anonymous answers are shown per unit only from this many on


# --- periods -----------------------------------------------------------------------------------
def period_bounds(period: str, now: datetime, tz) -> tuple[date, date, str]:
    """(first day, last day, key) of the last complete week or month before ``now``."""
    today = now.astimezone(tz).date()
    if period == "week":
        start = today - timedelta(days=today.weekday() + 7)
        end = start + timedelta(days=6)
        iso = start.isocalendar()
        return start, end, f"{iso.year}-W{iso.week:02d}"
    if period == "month":
        end = today.replace(day=1) - timedelta(days=1)
        return end.replace(day=1), end, f"{end.year}-{end.month:02d}"
    raise ValueError("period must be 'week' or 'month'")


def _utc(d: date, tz) -> datetime:
    return datetime.combine(d, time(0), tzinfo=tz).astimezone(timezone.utc)


def _fmt_day(d: date) -> str:
    return f"{d.month}月{d.day}日"


def _fmt_dt(dt: datetime | None, tz) -> str:
    return labels.fmt_dt(dt, tz)


# --- burden ------------------------------------------------------------------------------------
def groups_per_person(session: Session) -> dict[str, int]:
    """How many live groups each known cadre is in (cadres in no group count 0)."""
    counts: dict[str, int] = {pid: 0 for pid in session.execute(
        select(Person.id).where(Person.role.in_(("cadre", "unit_admin")))).scalars()}
    rows = session.execute(
        select(Membership.person_id, func.count()).join(Group, Group.id == Membership.group_id)
        .where(Group.status.in_(LIVE)).group_by(Membership.person_id)).all()
    for pid, n in rows:
        counts[pid] = n
    return counts


def unit_burden(session: Session, counts: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Units ranked by groups per cadre (most burdened first)."""
    counts = counts if counts is not None else groups_per_person(session)
    units = dict(session.execute(select(Person.id, Person.unit)).all())
    by_unit: dict[str, list[int]] = defaultdict(list)
    for pid, n in counts.items():
        by_unit[units.get(pid) or "未填单位"].append(n)
    owned = dict(session.execute(select(Group.unit, func.count()).where(Group.status.in_(LIVE))
                                 .group_by(Group.unit)).all())
    rows = [{"unit": u, "cadres": len(v), "mean": round(sum(v) / len(v), 1), "median": _median(v),
             "max": max(v), "groups_owned": owned.get(None if u == "未填单位" else u, 0)}
            for u, v in by_unit.items() if v]
    rows.sort(key=lambda r: (-r["mean"], -r["max"], r["unit"]))
    return rows


def _median(values) -> float:
    values = list(values)
    if not values:
        return 0
    m = statistics.median(values)
    return int(m) if float(m).is_integer() else round(m, 1)


median = _median  # the one rounding of a median shown anywhere (the dashboard's trends use it too)


# --- the report --------------------------------------------------------------------------------
@dataclass
class Report:
    period: str
    period_key: str
    start: date
    end: date
    generated_at: datetime
    county: str
    groups_live: int
    groups_registered: int
    groups_protected: int
    groups_temporary: int
    actions: dict[str, int]
    dissolved: int
    merged: int
    renewed: int
    kept: int
    restored: int
    protected_new: int
    findings_open: dict[str, int]
    rebounds_new: int
    cadres: int
    groups_per_cadre_median: float
    groups_per_cadre_median_prev: float | None
    groups_per_cadre_max: int
    groups_per_cadre_max_unit: str | None
    burdened_units: list[dict[str, Any]]
    pulse_responses: int
    pulse_heavy_share: float | None
    pulse_heavy_share_prev: float | None
    formalism_reports: int
    useless_votes: int | None  # None below MIN_FEEDBACK votes (shown as 不足5票, never as a number)
    dashboard_url: str
    xlsx_url: str
    docx_url: str
    trend: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["start"], d["end"] = self.start.isoformat(), self.end.isoformat()
        d["generated_at"] = self.generated_at.isoformat()
        return d


def _pulse(session: Session, start: date, end: date) -> tuple[int, float | None]:
    rows = session.execute(select(PulseResponse.value, func.count()).where(
        PulseResponse.day >= start, PulseResponse.day <= end).group_by(PulseResponse.value)).all()
    total = sum(n for _, n in rows)
    if total < MIN_FEEDBACK:
        return total, None
    heavy = sum(n for v, n in rows if v == 3)
    return total, round(heavy / total, 3)


def _rebounds(session: Session, t0: datetime, t1: datetime) -> int:
    """Groups found to be a comeback of a dissolved one in the period: rebound findings first seen
    then, and the look-back job's (回头看) audit records; each new group counted once."""
    ids: set[str] = set()
    for gids in session.execute(select(FindingRecord.group_ids).where(
            FindingRecord.kind == "rebound", FindingRecord.first_seen >= t0, FindingRecord.first_seen < t1)).scalars():
        ids.update(map(str, (gids or [])[:1]))
    for data in session.execute(select(AuditRecord.data).where(
            AuditRecord.action == "lookback", AuditRecord.at >= t0, AuditRecord.at < t1)).scalars():
        ids.update(map(str, (data or {}).get("rebound") or []))
    return len(ids)


def build_report(session: Session, *, period: str = "week", now: datetime, settings) -> Report:
    tz = settings.tz
    start, end, key = period_bounds(period, now, tz)
    t0, t1 = _utc(start, tz), _utc(end + timedelta(days=1), tz)
    live = Group.status.in_(LIVE)

    def count(*where) -> int:
        return session.execute(select(func.count()).select_from(Group).where(*where)).scalar_one()

    actions = dict(session.execute(
        select(AuditRecord.action, func.count()).where(AuditRecord.at >= t0, AuditRecord.at < t1)
        .group_by(AuditRecord.action)).all())
    findings = dict(session.execute(select(FindingRecord.kind, func.count())
                                    .where(FindingRecord.status == "open").group_by(FindingRecord.kind)).all())
    rebounds = _rebounds(session, t0, t1)
    counts = groups_per_person(session)
    units = unit_burden(session, counts)
    person_unit = dict(session.execute(select(Person.id, Person.unit)).all())
    top = max(counts.items(), key=lambda kv: (kv[1], kv[0]), default=(None, 0))
    prev_snap = session.execute(select(StatSnapshot).where(StatSnapshot.day < start)
                                .order_by(StatSnapshot.day.desc()).limit(1)).scalar()
    length = (end - start).days + 1
    n_pulse, heavy = _pulse(session, start, end)
    _, heavy_prev = _pulse(session, start - timedelta(days=length), start - timedelta(days=1))
    trend = [{"day": s.day.isoformat(), **s.data} for s in session.execute(
        select(StatSnapshot).where(StatSnapshot.day <= end).order_by(StatSnapshot.day.desc()).limit(90)).scalars()]
    base = settings.public_base_url.rstrip("/")
    return Report(
        period=period, period_key=key, start=start, end=end, generated_at=now,
        county=getattr(settings, "county_name", "") or "本县",
        groups_live=count(live), groups_registered=count(live, Group.registered_at.is_not(None)),
        groups_protected=count(live, Group.protected.is_(True)), groups_temporary=count(live, Group.temporary.is_(True)),
        actions=dict(sorted(actions.items())), dissolved=actions.get("dissolve", 0), merged=actions.get("merge", 0),
        renewed=actions.get("renew", 0), kept=actions.get("keep", 0) + actions.get("veto", 0),
        restored=actions.get("restore", 0), protected_new=actions.get("protect", 0),
        findings_open=dict(sorted(findings.items())), rebounds_new=rebounds,
        cadres=len(counts), groups_per_cadre_median=_median(counts.values()),
        groups_per_cadre_median_prev=(prev_snap.data.get("groups_per_cadre_median") if prev_snap else None),
        groups_per_cadre_max=top[1], groups_per_cadre_max_unit=person_unit.get(top[0]) if top[0] else None,
        burdened_units=units[:5], pulse_responses=n_pulse, pulse_heavy_share=heavy, pulse_heavy_share_prev=heavy_prev,
        formalism_reports=session.execute(select(func.count()).select_from(FormalismReport).where(
            FormalismReport.day >= start, FormalismReport.day <= end)).scalar_one(),
        useless_votes=shown_votes(session.execute(select(func.count()).select_from(UselessVote).where(
            UselessVote.day >= start, UselessVote.day <= end)).scalar_one()),
        dashboard_url=f"{base}/dashboard", xlsx_url=f"{base}/dashboard/download/report.xlsx?period={period}",
        docx_url=f"{base}/dashboard/download/report.docx?period={period}",
        trend=list(reversed(trend)),
    )


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{round(x * 100)}%"


def _votes(n: int | None) -> str:
    return FEW_VOTES if n is None else f"{n} 票"


def render_text(report: Report, *, markdown: bool = True) -> str:
    """The chat digest (markdown, one phone screen); ``markdown=False`` for a terminal or a page:
    no ``**``, links written out as "查看看板：URL"."""
    r = report
    title = "周报" if r.period == "week" else "月报"
    scope = "本周" if r.period == "week" else "本月"
    f = r.findings_open
    lines = [
        _bold(f"{r.county}工作群治理{title}（{_fmt_day(r.start)}—{_fmt_day(r.end)}）", markdown),
        f"台账在册 {r.groups_live} 个群（已登记 {r.groups_registered}，受保护 {r.groups_protected}，临时 {r.groups_temporary}）；"
        f"{scope}解散 {r.dissolved}，合并 {r.merged}，续期 {r.renewed}，保留 {r.kept}，恢复 {r.restored}。",
        "待处理：" + "，".join(f"{labels.kind(k.code)} {f.get(k.code, 0)}{k.digest}" for k in rules.KINDS
                              if k.digest is not None) + f"；回头看发现反弹 {r.rebounds_new} 个。",
    ]
    prev = f"（上期 {r.groups_per_cadre_median_prev}）" if r.groups_per_cadre_median_prev is not None else ""
    most = f"（{r.groups_per_cadre_max_unit}）" if r.groups_per_cadre_max_unit else ""
    lines.append(f"干部人均所在群：中位数 {r.groups_per_cadre_median}{prev}，最多 {r.groups_per_cadre_max}{most}。")
    if r.burdened_units:
        lines.append("负担最重：" + "，".join(f"{u['unit']} 人均{u['mean']}" for u in r.burdened_units[:3]) + "。")
    if r.pulse_heavy_share is None:
        pulse = f"负担脉搏：回答不足{MIN_FEEDBACK}份，暂不统计"
    else:
        pp = f"（上期 {_pct(r.pulse_heavy_share_prev)}）" if r.pulse_heavy_share_prev is not None else ""
        pulse = f"负担脉搏：重 {_pct(r.pulse_heavy_share)}{pp}"
    lines.append(f"{pulse}；匿名反映 {r.formalism_reports} 条，“这个群没用” {_votes(r.useless_votes)}。")
    if markdown:
        lines.append(f"[查看看板]({r.dashboard_url}) [下载通报]({r.docx_url}) [下载台账]({r.xlsx_url})")
    else:
        lines += [f"查看看板：{r.dashboard_url}", f"下载通报：{r.docx_url}", f"下载台账：{r.xlsx_url}"]
    return "\n".join(lines)


def _bold(text: str, markdown: bool) -> str:
    return f"**{text}**" if markdown else text


def digest_title(report: Report) -> str:
    title = "周报" if report.period == "week" else "月报"
    return f"{report.county}工作群治理{title}（{_fmt_day(report.start)}—{_fmt_day(report.end)}）"


# --- digest to the commission ------------------------------------------------------------------
def _next_working_time(now: datetime, settings) -> datetime:
    """The first moment in working time at or after ``now`` (governance.worktime)."""
    from governance.worktime import WorkTime, next_window_start

    return next_window_start(now, WorkTime.from_settings(settings)).astimezone(timezone.utc)


def enqueue_commission_digest(session: Session, now: datetime, settings, *, period: str | None = None) -> int:
    """Queue the digest for every commission member (outbox kind ``digest``, one per person and
    period, not before working time). Returns how many were queued (0 when already done)."""
    period = period or getattr(settings, "digest_period", "week")
    report = build_report(session, period=period, now=now, settings=settings)
    text = render_text(report)
    not_before = _next_working_time(now, settings)
    people = session.execute(select(Person.id).where(Person.role == "commission").order_by(Person.id)).scalars().all()
    queued = 0
    for pid in people:
        key = f"digest:{report.period_key}:{pid}"
        before = session.execute(select(func.count()).select_from(OutboxMessage)
                                 .where(OutboxMessage.dedupe_key == key)).scalar_one()
        enqueue(session, channel=person_channel(pid), recipient=pid, kind="digest",
                payload={"text": text, "markdown": True, "title": digest_title(report)},
                at=now, dedupe_key=key, not_before=not_before)
        queued += 0 if before else 1
    return queued


# --- daily figures -----------------------------------------------------------------------------
def compute_stats(session: Session) -> dict[str, Any]:
    counts = groups_per_person(session)
    live = Group.status.in_(LIVE)
    n = lambda *w: session.execute(select(func.count()).select_from(Group).where(*w)).scalar_one()  # noqa: E731
    findings = dict(session.execute(select(FindingRecord.kind, func.count())
                                    .where(FindingRecord.status == "open").group_by(FindingRecord.kind)).all())
    msgs, rituals = session.execute(select(func.coalesce(func.sum(Group.message_count), 0),
                                           func.coalesce(func.sum(Group.ritual_count), 0)).where(live)).one()
    return {"groups_live": n(live), "groups_registered": n(live, Group.registered_at.is_not(None)),
            "groups_protected": n(live, Group.protected.is_(True)), "groups_dissolved": n(Group.status == "dissolved"),
            "cadres": len(counts), "groups_per_cadre_median": _median(counts.values()),
            "groups_per_cadre_max": max(counts.values(), default=0),
            "groups_per_cadre_mean": round(sum(counts.values()) / len(counts), 2) if counts else 0,
            "findings_open": findings, "messages": int(msgs), "ritual_messages": int(rituals)}


def snapshot_stats(session: Session, day: date) -> dict[str, Any]:
    """Store (or replace) the figures of ``day``; the scheduler calls it daily."""
    data = compute_stats(session)
    snap = session.get(StatSnapshot, day)
    if snap is None:
        session.add(StatSnapshot(day=day, data=data))
    else:
        snap.data = data
    session.flush()
    return data


def ensure_snapshot(session: Session, day: date) -> None:
    if session.get(StatSnapshot, day) is None:
        snapshot_stats(session, day)


# --- the Excel ledger (台账) -------------------------------------------------------------------
LEDGER_HEADERS = ["群编号", "群名称", "单位", "类别", "用途", "群主", "状态", "受保护", "临时", "到期日",
                  "登记时间", "成员数", "消息数", "留痕消息数", "最后工作消息", "首次发现"]
FINDING_HEADERS = ["编号", "问题类型", "涉及群", "分值", "建议处置", "依据", "状态", "首次发现", "最近发现"]
AUDIT_HEADERS = ["序号", "时间", "操作人", "动作", "群", "理由", "哈希"]
UNIT_HEADERS = ["单位", "干部数", "人均所在群", "中位数", "最多", "本单位群数"]


def ledger_rows(session: Session, tz) -> list[list[Any]]:
    names = dict(session.execute(select(Person.id, Person.name)).all())
    rows = []
    for g in session.execute(select(Group).order_by(Group.unit, Group.name, Group.id)).scalars():
        rows.append([g.id, g.name, g.unit or "", g.category or "", g.purpose or "",
                     names.get(g.owner_id) or g.owner_id or "", labels.status(g.status),
                     "是" if g.protected else "否", "是" if g.temporary else "否",
                     labels.fmt_day(g.expires_at, tz), _fmt_dt(g.registered_at, tz),
                     g.member_count, g.message_count, g.ritual_count, _fmt_dt(g.last_work_at, tz),
                     _fmt_dt(g.first_seen_at, tz)])
    return rows


def xlsx_append(ws, values: list[Any]) -> None:
    """Append one row to an openpyxl sheet; every xlsx this project writes goes through here.

    openpyxl turns any string starting with ``=`` into a live formula (formula injection: a group
    named ``=HYPERLINK(...)`` would become a link in the commission's spreadsheet). Every string
    cell is therefore set explicitly as text, so it reads back exactly as typed."""
    row = ws.max_row + 1 if ws.max_row > 1 or ws.cell(1, 1).value is not None else 1
    for col, value in enumerate(values, 1):
        cell = ws.cell(row=row, column=col)
        if isinstance(value, str):
            cell.value = value
            cell.data_type = "s"  # after assignment: overrides openpyxl's "f" for a leading "="
        else:
            cell.value = value


def _by_label(counts: dict[str, int], label) -> dict[str, int]:
    """Counts per code summed per Chinese label (keep and veto are both 保留)."""
    out: dict[str, int] = {}
    for code, n in counts.items():
        out[label(code)] = out.get(label(code), 0) + n
    return out


def write_xlsx(session: Session, report: Report, out: str | BinaryIO, settings) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    tz = settings.tz
    wb = Workbook()
    head_font, head_fill = Font(bold=True), PatternFill("solid", fgColor="DDEBF7")

    def sheet(title: str, headers: list[str], rows: list[list[Any]], widths: list[int], first: bool = False):
        ws = wb.active if first else wb.create_sheet()
        ws.title = title
        xlsx_append(ws, headers)
        for c in ws[1]:
            c.font, c.fill = head_font, head_fill
            c.alignment = Alignment(horizontal="center", vertical="center")
        for row in rows:
            xlsx_append(ws, row)
        ws.freeze_panes = "A2"
        for i, w in enumerate(widths, 1):
            ws.column_dimensions[get_column_letter(i)].width = w
        if rows:
            ws.auto_filter.ref = ws.dimensions
        return ws

    r = report
    summary = [
        ["报告期", f"{r.start.isoformat()} 至 {r.end.isoformat()}"], ["生成时间", _fmt_dt(r.generated_at, tz)],
        ["在册群数", r.groups_live], ["已登记", r.groups_registered], ["受保护群", r.groups_protected],
        ["临时群", r.groups_temporary], ["本期解散", r.dissolved], ["本期合并", r.merged], ["本期续期", r.renewed],
        ["本期保留", r.kept], ["本期恢复", r.restored], ["本期设为受保护", r.protected_new],
        *[[f"待处理：{labels.kind(k)}", v] for k, v in r.findings_open.items()],
        ["回头看发现反弹", r.rebounds_new], ["干部数", r.cadres], ["人均所在群（中位数）", r.groups_per_cadre_median],
        ["人均所在群（最多）", r.groups_per_cadre_max], ["负担脉搏回答数", r.pulse_responses],
        ["负担“重”占比", _pct(r.pulse_heavy_share)], ["匿名反映", r.formalism_reports],
        ["“这个群没用”票数", FEW_VOTES if r.useless_votes is None else r.useless_votes],
        *[[f"本期操作：{name}", v] for name, v in _by_label(r.actions, labels.action).items()],
    ]
    sheet("概况", ["指标", "数值"], summary, [28, 36], first=True)
    sheet("台账", LEDGER_HEADERS, ledger_rows(session, tz),
          [24, 28, 16, 12, 30, 12, 10, 6, 6, 12, 18, 8, 10, 10, 18, 18])
    from storage.reconcile import entry_names

    names = {**entry_names(session), **dict(session.execute(select(Group.id, Group.name)).all())}
    frows = [[f.id, labels.kind(f.kind), "、".join(names.get(g, g) for g in f.group_ids), round(f.score, 2),
              labels.action(f.action), "；".join(map(str, f.reasons)), labels.label("finding_status", f.status),
              _fmt_dt(f.first_seen, tz), _fmt_dt(f.last_seen, tz)]
             for f in session.execute(select(FindingRecord).order_by(FindingRecord.status.desc(), FindingRecord.kind,
                                                                     FindingRecord.id)).scalars()]
    sheet("问题清单", FINDING_HEADERS, frows, [8, 14, 40, 8, 10, 60, 10, 18, 18])
    t0, t1 = _utc(r.start, tz), _utc(r.end + timedelta(days=1), tz)
    people = dict(session.execute(select(Person.id, Person.name)).all())
    arows = [[a.id, _fmt_dt(a.at, tz), labels.actor(a.actor, people), labels.action(a.action),
              names.get(a.group_id, a.group_id or ""),
              labels.audit_reason(a.action, a.reason, a.data), a.hash[:16]]
             for a in session.execute(select(AuditRecord).where(AuditRecord.at >= t0, AuditRecord.at < t1)
                                      .order_by(AuditRecord.id)).scalars()]
    sheet("处置记录", AUDIT_HEADERS, arows, [8, 18, 14, 10, 28, 40, 20])
    urows = [[u["unit"], u["cadres"], u["mean"], u["median"], u["max"], u["groups_owned"]] for u in unit_burden(session)]
    sheet("单位负担", UNIT_HEADERS, urows, [20, 8, 12, 8, 8, 12])
    sheet("台账核对", RECONCILE_HEADERS, reconcile_rows(session), [12, 28, 16, 28, 16, 16, 8, 18, 8])
    wb.save(out)


RECONCILE_HEADERS = ["核对结果", "台账中的群", "台账单位", "平台上的群", "平台", "平台群单位", "人数", "依据", "把握"]


def reconcile_rows(session: Session) -> list[list[Any]]:
    """The reconciliation (``storage.reconcile``): matched, to review (one row per candidate), on the
    ledger only (已不存在或未接入) and on a platform only (未报备)."""
    from storage.reconcile import page

    rep = page(session)

    def grp(g: dict) -> list[Any]:
        return [g["name"], labels.label("platform", g["platform"]), g["unit"], g["members"]]

    rows: list[list[Any]] = []
    for m in rep["matched"]:
        rows.append(["已对上", m["ledger"]["name"], m["ledger"]["unit"], *grp(m["group"]), labels.label("match", m["by"]),
                     _pct(m["confidence"])])
    for r in rep["review"]:
        for n, c in enumerate(r["candidates"], 1):
            rows.append([f"待确认（候选{n}）", r["ledger"]["name"], r["ledger"]["unit"], *grp(c), "", ""])
    for g in rep["missing"]:
        rows.append(["只在台账上（已不存在或未接入）", g["name"], g["unit"], "", "", "", "", "", ""])
    for g in rep["unregistered"]:
        rows.append(["未报备（平台上有、台账上没有）", "", "", *grp(g), "", ""])
    return rows


def kinds_counter(session: Session) -> Counter:
    return Counter(dict(session.execute(select(FindingRecord.kind, func.count())
                                        .where(FindingRecord.status == "open").group_by(FindingRecord.kind)).all()))
