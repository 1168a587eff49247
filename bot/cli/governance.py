"""``qunzhi scan`` and ``qunzhi sweep``: findings and the lifecycle from the command line.

``--as-of 2026-11-22`` means the END of that day in ``QUNZHI_TIMEZONE`` (everything due on
that day is handled); a full ISO datetime with an offset is also accepted.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timezone

import typer

from governance import labels


def parse_as_of(value: str | None, settings) -> datetime:
    from storage.lifecycle import as_of

    if not value:
        return datetime.now(timezone.utc)
    value = value.strip()
    try:
        if len(value) == 10:  # a day, 2026-11-22: the end of that day
            return as_of(date.fromisoformat(value), settings)
        dt = datetime.fromisoformat(value)  # a moment, 2026-11-22T10:00
    except ValueError:
        typer.secho(f"无法识别的日期：{value}（请写成 2026-11-22）", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=settings.tz)
    return dt.astimezone(timezone.utc)


def make_senders(settings) -> dict:
    """Platform name → the group operations of its sender (``scheduler.lifecycle.group_senders``)
    for the platform steps; empty when none is configured or they cannot be built (the groups
    then wait in ``dissolving``)."""
    try:
        from scheduler.lifecycle import group_senders

        return group_senders(settings)
    except Exception as e:  # bad configuration: the platform steps wait
        typer.secho(f"平台发送通道不可用：{e}", fg=typer.colors.YELLOW, err=True)
        return {}


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """A table as wide as the terminal; long cells wrap, nothing is cut off."""
    from rich.console import Console
    from rich.table import Table

    t = Table(show_lines=False)
    for h in headers:
        t.add_column(h, overflow="fold")
    for r in rows:
        t.add_row(*r)
    console = Console(record=True, force_terminal=False)
    with console.capture() as cap:
        console.print(t)
    return cap.get()


def register(app: typer.Typer) -> None:
    @app.command("scan")
    def scan_cmd(as_of: str = typer.Option(None, "--as-of", help="按某天结束时计算，如 2026-11-22"),
                 as_json: bool = typer.Option(False, "--json", help="输出 JSON")) -> None:
        """运行全部治理规则并列出发现（不做任何改动）。"""
        from bot.cli import runtime
        from storage.lifecycle import compute_findings

        rt = runtime()
        now = parse_as_of(as_of, rt.settings)
        with rt.db.session() as s:
            findings = compute_findings(s, now, rt.settings)
            names = {}
            if not as_json:
                from storage.models import Group
                from sqlalchemy import select

                ids = {gid for f in findings for gid in f.group_ids[:3]}
                if ids:
                    names = dict(s.execute(select(Group.id, Group.name).where(Group.id.in_(list(ids)))).all())
            s.rollback()
        if as_json:
            typer.echo(json.dumps({"as_of": now.isoformat(), "findings": [f.to_dict() for f in findings]},
                                  ensure_ascii=False, indent=2))
            return
        if not findings:
            typer.echo(f"截至{now.astimezone(rt.settings.tz):%Y-%m-%d %H:%M}，没有发现问题。")
            return
        rows = []
        for f in findings:
            groups = "、".join(names.get(g, g) for g in f.group_ids[:3]) + ("等" if len(f.group_ids) > 3 else "")
            rows.append([labels.kind(f.kind), groups or "-", "、".join(f.person_ids[:3]) or "-",
                         f"{f.score:g}", labels.action(f.action), "；".join(f.reasons)])
        typer.echo(f"截至{now.astimezone(rt.settings.tz):%Y-%m-%d %H:%M}，共{len(findings)}项发现：")
        typer.echo(_table(["类型", "群", "人员", "分值", "建议", "原因"], rows))

    @app.command("sweep")
    def sweep_cmd(as_of: str = typer.Option(None, "--as-of", help="按某天结束时执行，如 2026-11-22"),
                  apply: bool = typer.Option(False, "--apply", help="真正执行（默认只预演，不做改动）")) -> None:
        """推进群的生命周期：提醒、解散、清除。默认只显示将做什么。"""
        from bot.cli import runtime
        from scheduler.lifecycle import sweep

        rt = runtime()
        now = parse_as_of(as_of, rt.settings)
        senders = make_senders(rt.settings) if apply else {}
        report = sweep(rt.db, now, rt.settings, apply=apply, senders=senders)
        if report.locked_out:
            typer.secho("另一个清理任务正在运行，本次未执行。", fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(1)
        head = "执行" if apply else "预演（未做任何改动，加 --apply 执行）"
        stamp = f"{now.astimezone(rt.settings.tz):%Y-%m-%d %H:%M}"
        if not report.steps:
            typer.echo(f"{head}：截至{stamp}，没有需要推进的群（发现{report.findings}项）。")
            return
        rows = [[s.name, s.group_id, labels.action(s.action), labels.method(s.method) or "-", s.detail,
                 labels.label("result", s.result)] for s in report.steps]
        typer.echo(f"{head}：截至{stamp}，共{len(report.steps)}步（发现{report.findings}项）。")
        typer.echo(_table(["群", "编号", "操作", "方式", "说明", "结果"], rows))
