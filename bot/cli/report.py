"""CLI: ``qunzhi report``, ``qunzhi audit verify`` and ``qunzhi demo``."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer

log = logging.getLogger(__name__)

audit_app = typer.Typer(help="审计留痕", no_args_is_help=True)


def _runtime():
    from bot.cli import runtime

    return runtime()


def report(period: str = typer.Option("week", "--period", help="week（上一整周）或 month（上一整月）"),
           fmt: str = typer.Option("text", "--format", help="text | json | xlsx | docx"),
           out: Path | None = typer.Option(None, "--out", help="输出文件（xlsx、docx 必填；text/json 默认打印）")) -> None:
    """生成治理周报/月报：文字、JSON、可归档的 Excel 台账或 Word 通报。"""
    from storage.reports import build_report, render_text, write_xlsx

    if period not in ("week", "month"):
        typer.secho("--period 只能是 week 或 month", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if fmt not in ("text", "json", "xlsx", "docx"):
        typer.secho("--format 只能是 text、json、xlsx 或 docx", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if fmt in ("xlsx", "docx") and out is None:
        typer.secho(f"导出 {fmt} 需要 --out 文件名", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    rt = _runtime()
    with rt.db.session() as s:
        rep = build_report(s, period=period, now=rt.now(), settings=rt.settings)
        if fmt == "xlsx":
            write_xlsx(s, rep, str(out), rt.settings)
            typer.echo(f"已导出台账：{out}")
            return
        if fmt == "docx":
            from storage.report_docx import write_docx

            write_docx(s, rep, str(out), rt.settings)
            typer.echo(f"已导出通报：{out}")
            return
        body = render_text(rep, markdown=False) if fmt == "text" else json.dumps(rep.to_dict(), ensure_ascii=False, indent=2, default=str)
    if out is not None:
        out.write_text(body + "\n", encoding="utf-8")
        typer.echo(f"已写入：{out}")
    else:
        typer.echo(body)


@audit_app.command("verify")
def audit_verify() -> None:
    """逐条校验审计链，指出第一条被改动或删除的记录。"""
    from storage.audit import verify

    rt = _runtime()
    with rt.db.session() as s:
        res = verify(s)
    if res.ok:
        typer.echo(f"审计链完整：共校验 {res.checked} 条记录，未发现改动或删除。")
        return
    typer.secho(f"审计链被破坏：{res.problem}（此前 {res.checked} 条完好）。", fg=typer.colors.RED, err=True)
    typer.echo(f"第一条问题记录：#{res.first_bad_id}")
    raise typer.Exit(1)


def demo(seed: int = typer.Option(7, "--seed", help="随机数种子"),
         weeks: int = typer.Option(12, "--weeks", help="模拟周数"),
         towns: int = typer.Option(3, "--towns", help="乡镇数"),
         villages: int = typer.Option(3, "--villages", help="每个乡镇的村数"),
         database_url: str | None = typer.Option(None, "--database-url", help="默认使用临时 SQLite 数据库"),
         as_json: bool = typer.Option(False, "--json", help="只输出一个 JSON 对象"),
         progress: bool = typer.Option(True, "--progress/--no-progress", help="在标准错误输出显示进度条"),
         keep: bool = typer.Option(False, "--keep", help="把模拟县写入配置的数据库（QUNZHI_DATABASE_URL）并保留，"
                                   "供看板浏览；数据库里已有真实数据时拒绝")) -> None:
    """模拟一个县十二周的工作群治理，输出治理前后的对比。"""
    from bot.demo import DemoConfig, HoldsRealData, format_result, run_demo

    base_url = "http://127.0.0.1:8000"
    if keep:
        from config.settings import get_settings

        settings = get_settings()
        database_url = database_url or settings.database_url
        base_url = settings.public_base_url
    cfg = DemoConfig(seed=seed, weeks=weeks, towns=towns, villages=villages, database_url=database_url,
                     progress=progress, keep=keep, base_url=base_url)
    try:
        result = run_demo(cfg)
    except HoldsRealData as e:
        from sqlalchemy.engine import make_url

        log.warning("demo --keep refused for %s: %s", make_url(database_url).render_as_string(hide_password=True), e)
        typer.secho(str(e), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, sort_keys=True))
    else:
        typer.echo(format_result(result))
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("demo")(demo)
    app.add_typer(audit_app, name="audit")
