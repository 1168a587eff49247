"""CLI: ``qunzhi import groups|messages``, ``qunzhi groups``, ``qunzhi roles``."""
from __future__ import annotations

from pathlib import Path

import typer
from sqlalchemy import select

from storage import audit
from storage.importers import ImportFormatError, import_ledger, import_messages
from storage.models import Group, Person
from storage.repo import get_or_create_person

ROLES = {"cadre": "干部", "unit_admin": "单位管理员", "admin": "管理员", "commission": "纪委监委"}


def _run_import(kind: str, file: Path, skip_invalid: bool) -> None:
    from bot.cli import runtime

    if not file.exists():
        typer.secho(f"找不到文件：{file}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    rt = runtime()
    fn = import_ledger if kind == "groups" else import_messages
    try:
        with rt.db.session() as s:
            result = fn(s, file, now=rt.now(), settings=rt.settings, skip_invalid=skip_invalid)
    except ImportFormatError as e:
        typer.secho(f"导入失败：{e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    for err in result.errors:
        typer.secho(str(err), fg=typer.colors.YELLOW, err=True)
    if not result.imported:
        typer.secho(f"发现{len(result.errors)}行无效，未导入任何数据。修正后重试，或加 --skip-invalid 跳过无效行。",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(f"导入完成：{result.summary()}。")
    from storage.lifecycle import refresh_findings

    with rt.db.session() as s:  # the dashboard's 问题清单 reflects the import at once
        found = refresh_findings(s, rt.now(), rt.settings)
    typer.echo(f"问题清单已更新：{len(found)}项。")


def register(app: typer.Typer) -> None:
    from bot.cli import import_app

    @import_app.command("groups")
    def import_groups(file: Path = typer.Argument(..., help="台账文件（CSV 或 XLSX）"),
                      skip_invalid: bool = typer.Option(False, "--skip-invalid", help="跳过无效行，导入其余行")) -> None:
        """导入群台账：group_id,name,platform,owner_id,unit,category,purpose,created_at,expires_at,member_ids"""
        _run_import("groups", file, skip_invalid)

    @import_app.command("messages")
    def import_msgs(file: Path = typer.Argument(..., help="消息记录（JSONL，每行一条）"),
                    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="跳过无效行，导入其余行")) -> None:
        """导入消息记录：每行 group_id, sender_id, sent_at, text, msg_id（按 msg_id 去重）"""
        _run_import("messages", file, skip_invalid)

    @app.command("groups")
    def list_groups(unit: str = typer.Option(None, "--unit", help="只看某单位"),
                    status: str = typer.Option(None, "--status", help="active/warned/dissolved/merged/purged"),
                    limit: int = typer.Option(200, "--limit", help="最多显示多少行")) -> None:
        """在终端以表格列出台账。"""
        from rich.console import Console
        from rich.table import Table

        from bot.cli import runtime

        rt = runtime()
        with rt.db.session() as s:
            q = select(Group).order_by(Group.unit, Group.name).limit(limit)
            if unit:
                q = q.where(Group.unit == unit)
            if status:
                q = q.where(Group.status == status)
            rows = s.execute(q).scalars().all()
            table = Table(title=f"工作群台账（{len(rows)}）")
            for col in ("群编号", "群名称", "群主", "单位", "类别", "常设", "状态", "到期", "成员", "最近工作消息"):
                table.add_column(col)
            for g in rows:
                table.add_row(g.id, g.name, g.owner_id or "", g.unit or "", g.category or "",
                              "是" if g.protected else "", g.status, g.expires_at.isoformat() if g.expires_at else "",
                              str(g.member_count),
                              g.last_work_at.astimezone(rt.settings.tz).strftime("%Y-%m-%d") if g.last_work_at else "")
        Console().print(table)

    roles_app = typer.Typer(help="人员角色", no_args_is_help=True)
    app.add_typer(roles_app, name="roles")

    @roles_app.command("set")
    def set_role(person_id: str = typer.Argument(..., help="人员编号（企业微信 UserID）"),
                 role: str = typer.Argument(..., help="cadre / unit_admin / admin / commission"),
                 unit: str = typer.Option(None, "--unit", help="所属单位"),
                 name: str = typer.Option(None, "--name", help="姓名")) -> None:
        """设置人员角色（记入审计日志）。"""
        from bot.cli import runtime

        if role not in ROLES:
            typer.secho(f"角色“{role}”无效，可用：{', '.join(ROLES)}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2)
        rt = runtime()
        now = rt.now()
        with rt.db.session() as s:
            p = get_or_create_person(s, person_id, now)
            if role == "unit_admin" and not (unit or p.unit):
                typer.secho("单位管理员必须指定单位：--unit 单位名称", fg=typer.colors.RED, err=True)
                raise typer.Exit(2)
            old = p.role
            p.role = role
            if unit:
                p.unit = unit
            if name:
                p.name = name
            audit.record(s, actor="cli", action="role_change", at=now, reason=f"{old} → {role}",
                         data={"person_id": person_id, "old": old, "new": role, "unit": p.unit})
        typer.echo(f"已将 {person_id} 设为{ROLES[role]}。")

    @roles_app.command("list")
    def list_roles() -> None:
        """列出非普通干部的人员。"""
        from bot.cli import runtime

        rt = runtime()
        with rt.db.session() as s:
            for p in s.execute(select(Person).where(Person.role != "cadre").order_by(Person.role, Person.id)).scalars():
                typer.echo(f"{p.id}\t{ROLES.get(p.role, p.role)}\t{p.unit or ''}\t{p.name or ''}")
