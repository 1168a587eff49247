"""CLI: ``qunzhi backup`` and ``qunzhi restore`` (the archive format is ``storage.backup``), ``qunzhi doctor``."""
from __future__ import annotations

from pathlib import Path

import typer


def backup_cmd(out: Path = typer.Argument(..., help="备份文件，如 qunzhi-2026-12-01.qzbak")) -> None:
    """备份数据库（加密，密钥为 QUNZHI_BACKUP_KEY；不含匿名投票期的随机盐）。"""
    from bot.cli import runtime
    from storage.backup import BackupError, backup

    rt = runtime()
    if out.exists():
        typer.secho(f"文件已存在：{out}，请换一个文件名（不会覆盖已有备份）。", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    try:
        m = backup(rt.db, out, rt.settings.backup_key, now=rt.now())
    except BackupError as e:
        typer.secho(f"备份失败：{e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"已备份到 {out}（{out.stat().st_size} 字节，已加密；审计记录 {m['audit_records']} 条；"
               f"不含：{'、'.join(m['excluded_tables'])}）。请把密钥与备份分开保管。")


def restore_cmd(archive: Path = typer.Argument(..., help="备份文件"),
                force: bool = typer.Option(False, "--force", help="目标数据库已有数据时仍然覆盖")) -> None:
    """从备份恢复数据库（先停止服务），恢复后升级到当前版本并校验审计链。"""
    from bot.cli import runtime
    from storage.backup import BackupError, restore

    if not archive.is_file():
        typer.secho(f"找不到备份文件：{archive}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    rt = runtime()
    try:
        res = restore(rt.db, archive, rt.settings.backup_key, force=force)
    except BackupError as e:
        typer.secho(f"恢复失败：{e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"已从 {archive} 恢复（备份时间 {res.created_at}）。")
    if res.audit_ok:
        typer.echo(f"审计链完整：共校验 {res.audit_checked} 条记录。")
    else:
        typer.secho(f"注意：审计链校验不通过：{res.audit_problem}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("backup")(backup_cmd)
    app.command("restore")(restore_cmd)
    app.command("doctor")(doctor_cmd)


def doctor_cmd() -> None:
    """检查配置、数据库、平台凭据、时钟和节假日安排，指出问题和解决办法（只看不改）。"""
    from bot.cli import load_settings
    from bot.doctor import STATUS_LABELS, run_checks

    rows = run_checks(load_settings())
    for c in rows:
        line = f"[{STATUS_LABELS[c.status]}] {c.area}：{c.what}"
        typer.secho(line, fg={"ok": None, "warn": typer.colors.YELLOW, "error": typer.colors.RED}[c.status])
        if c.fix:
            typer.echo(f"    解决办法：{c.fix}")
    errors = sum(c.status == "error" for c in rows)
    warnings = sum(c.status == "warn" for c in rows)
    typer.echo(f"共 {len(rows)} 项：错误 {errors} 项，注意 {warnings} 项。")
    if errors:
        raise typer.Exit(1)
