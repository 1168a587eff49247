"""CLI: ``qunzhi import groups|messages``, ``qunzhi groups``, ``qunzhi roles``."""
from __future__ import annotations

from pathlib import Path

import typer
from sqlalchemy import select

from governance import labels
from storage import audit, identity
from storage.importers import ImportFormatError, import_ledger, import_messages, parse_covers
from storage.ledger_format import LayoutError, parse_map
from storage.models import Group, Person
from storage.repo import display_name, get_or_create_person

ROLES = labels.ROLES


def _run_import(kind: str, file: Path, skip_invalid: bool, mapping: list[str] | None = None,
                dry_run: bool = False, covers: str | None = None, groups_in_file_only: bool = False) -> None:
    from bot.cli import runtime

    if not file.exists():
        typer.secho(f"找不到文件：{file}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    try:
        overrides = parse_map(mapping or [])
    except LayoutError as e:
        typer.secho(f"导入失败：{e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    rt = runtime()
    extra: dict = {}
    try:
        if kind == "messages":
            extra["groups_in_file_only"] = groups_in_file_only
            if covers:
                extra["covers"] = parse_covers(covers, rt.settings.tz)
        with rt.db.session() as s:
            if kind == "groups":
                result = import_ledger(s, file, now=rt.now(), settings=rt.settings, skip_invalid=skip_invalid,
                                       overrides=overrides, dry_run=dry_run)
            elif kind == "people":
                from storage.people import import_people

                result = import_people(s, file, now=rt.now(), settings=rt.settings, skip_invalid=skip_invalid,
                                       overrides=overrides, dry_run=dry_run)
            else:
                result = import_messages(s, file, now=rt.now(), settings=rt.settings, skip_invalid=skip_invalid, **extra)
            if dry_run:
                s.rollback()
    except ImportFormatError as e:
        typer.secho(f"导入失败：{e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    if dry_run:
        _print_dry_run(result)
        if result.errors:  # as the real import would refuse the file
            raise typer.Exit(1)
        return
    for err in result.errors:
        typer.secho(str(err), fg=typer.colors.YELLOW, err=True)
    for w in getattr(result, "warnings", []):
        typer.secho(f"提醒：{w}", fg=typer.colors.YELLOW, err=True)
    _print_changes(result)
    if not result.imported:
        typer.secho(f"发现{len(result.errors)}行无效，未导入任何数据。修正后重试，或加 --skip-invalid 跳过无效行。",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(f"导入完成：{result.summary(rt.settings.tz)}。")
    from storage.lifecycle import refresh_findings

    with rt.db.session() as s:  # the dashboard's 问题清单 reflects the import at once
        found = refresh_findings(s, rt.now(), rt.settings)
    typer.echo(f"问题清单已更新：{len(found)}项。")


def _choices(table: dict[str, str]) -> str:
    """Option values with their meaning: active（正常）、warned（已提醒待解散）…"""
    return "、".join(f"{k}（{v}）" for k, v in table.items())


def print_groups(rows: list[Group], owners: dict[str, str | None], tz) -> None:
    """The ledger as a table that fits the terminal: all columns from 120 columns on, otherwise
    name and number (below it) in one column and the essentials beside it. Cells wrap, nothing is cut."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    wide = console.width >= 120
    table = Table(title=f"工作群台账（{len(rows)}）", box=box.SIMPLE_HEAD, pad_edge=False)
    dates = {"no_wrap": True}
    if wide:
        for col in ("群编号", "群名称", "群主", "单位", "类别", "受保护", "状态"):
            table.add_column(col, overflow="fold")
        table.add_column("到期", **dates)
        table.add_column("成员", justify="right")
        table.add_column("最近工作消息", **dates)
    else:
        from rich.cells import cell_len

        longest = max((cell_len(g.name) for g in rows), default=0)
        # the name gets room first; the other columns wrap
        # the name gets what the other columns leave (they wrap within 6 characters)
        table.add_column("群名称", overflow="fold", min_width=min(longest, max(8, console.width - 54)))
        table.add_column("单位", overflow="fold", max_width=12)
        table.add_column("状态", overflow="fold", max_width=14)
        table.add_column("成员", justify="right")
        table.add_column("最近工作", no_wrap=True, min_width=10)
    for g in rows:
        owner = owners.get(g.owner_id) or g.owner_id or ""
        expires, last = labels.fmt_day(g.expires_at, tz), labels.fmt_day(g.last_work_at, tz)
        state = labels.status(g.status) + ("（受保护）" if g.protected and not wide else "")
        if wide:
            table.add_row(Text(g.id), Text(g.name), Text(owner), Text(g.unit or ""), Text(g.category or ""),
                          "是" if g.protected else "", state, expires, str(g.member_count), last)
        else:
            if expires:
                state += f"\n{expires}到期"
            table.add_row(Text.assemble(g.name, "\n", (g.id, "dim")), Text(g.unit or ""), state,
                          str(g.member_count), last)
    console.print(table)


def _print_changes(result) -> None:
    for gid, old, row in getattr(result, "renamed", []):
        if old == row.name:
            typer.echo(f"“{old}”的单位改为“{row.unit or '未填'}”（{row.where}，群编号 {gid}）")
        else:
            typer.echo(f"改名：“{old}” → “{row.name}”（{row.where}，群编号 {gid}）")
    for gid, name, unit in getattr(result, "missing", []):
        typer.echo(f"文件中已没有：“{name}”（{unit or '未填单位'}，群编号 {gid}），未删除，请纪委监委决定是否处理。")


def _fmt(v) -> str:
    if v is None or v == "" or v == []:
        return "—"
    if isinstance(v, list):
        return "、".join(map(str, v))
    return str(v)


def _print_dry_run(result) -> None:
    typer.echo("预演（--dry-run）：只读取和检查，不写入任何数据。")
    for sl in result.sheets:
        where = f"工作表“{sl.sheet}”" if sl.sheet is not None else "文件"
        filled = f"，填报日期 {sl.report_date.isoformat()}" if sl.report_date else ""
        typer.echo(f"{where}：表头在第{sl.layout.header_row}行，读取{sl.rows}行有效数据{filled}。列的对应：")
        for line in sl.layout.describe():
            typer.echo(f"  {line}")
    if result.preview:
        typer.echo(f"前{len(result.preview)}行的理解：")
        for r in result.preview:
            people = r.member_ids + [f"{n}（未匹配）" for n in r.unresolved]
            count = len(people) if people else r.member_count
            members = f"{_fmt(people)}（{count}人）" if count is not None else "未填"
            typer.echo(f"  {r.where}：群名称 {r.name}；单位 {_fmt(r.unit)}；群主 {_fmt(r.owner_id or r.owner_name)}；"
                       f"类别 {_fmt(r.category)}；建群日期 {_fmt(r.created_at)}；到期日期 {_fmt(r.expires_at)}；"
                       f"成员 {members}")
    if result.errors:
        typer.echo(f"问题（{len(result.errors)}行无效）：")
        for e in result.errors:
            typer.echo(f"  {e}")
    if result.warnings:
        typer.echo(f"提醒（{len(result.warnings)}条）：")
        for w in result.warnings:
            typer.echo(f"  {w}")
    _print_changes(result)
    verdict = "有无效行，正式导入时将不导入任何数据（除非加 --skip-invalid）" if result.errors else "可以导入"
    typer.echo(f"预演结果：{result.summary()}；{verdict}。未写入任何数据。")


def register(app: typer.Typer) -> None:
    from bot.cli import import_app

    @import_app.command("groups")
    def import_groups(file: Path = typer.Argument(..., help="台账文件（XLSX、XLS、ODS 或 CSV）"),
                      skip_invalid: bool = typer.Option(False, "--skip-invalid", help="跳过无效行，导入其余行"),
                      dry_run: bool = typer.Option(False, "--dry-run", help="只预演：显示列的对应、前几行和全部问题，不写入"),
                      mapping: list[str] = typer.Option(None, "--map", help="指定列的含义：列名=字段，如 群的名字=群名称")
                      ) -> None:
        """导入群台账：表头可为 群名称、群主、所属单位、群类型、建群用途、建群时间、拟解散时间、成员 等"""
        _run_import("groups", file, skip_invalid, mapping, dry_run)

    @import_app.command("people")
    def import_roster(file: Path = typer.Argument(..., help="花名册（XLSX、XLS、ODS 或 CSV）"),
                      skip_invalid: bool = typer.Option(False, "--skip-invalid", help="跳过无效行，导入其余行"),
                      dry_run: bool = typer.Option(False, "--dry-run", help="只预演，不写入"),
                      mapping: list[str] = typer.Option(None, "--map", help="指定列的含义：列名=字段")) -> None:
        """导入花名册：姓名、单位、职务、企业微信账号（userid）、钉钉 userid、飞书 open_id"""
        _run_import("people", file, skip_invalid, mapping, dry_run)

    @import_app.command("messages")
    def import_msgs(file: Path = typer.Argument(..., help="消息记录（JSONL，每行一条）"),
                    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="跳过无效行，导入其余行"),
                    covers: str = typer.Option(None, "--covers", metavar="开始..结束",
                                               help="记录覆盖的时间段，如 2026-09-01..2026-11-30"
                                                    "（默认：文件中最早到最晚的消息时间）"),
                    groups_in_file_only: bool = typer.Option(
                        False, "--groups-in-file-only",
                        help="只算文件中出现的群（默认：文件所涉平台上的全部已知群）")) -> None:
        """导入消息记录：每行 group_id, sender_id, sent_at, text, msg_id（按 msg_id 去重）。

        覆盖期内没有任何工作消息的群，自建群或覆盖期开始起算未活跃天数。"""
        _run_import("messages", file, skip_invalid, covers=covers, groups_in_file_only=groups_in_file_only)

    @app.command("groups")
    def list_groups(unit: str = typer.Option(None, "--unit", help="只看某单位"),
                    status: str = typer.Option(None, "--status", help="按状态筛选：" + _choices(labels.GROUP_STATUSES)),
                    limit: int = typer.Option(200, "--limit", help="最多显示多少行")) -> None:
        """在终端以表格列出台账（终端较窄时合并、减少列，群名不截断）。"""
        from bot.cli import runtime

        rt = runtime()
        with rt.db.session() as s:
            q = select(Group).order_by(Group.unit, Group.name).limit(limit)
            if unit:
                q = q.where(Group.unit == unit)
            if status:
                q = q.where(Group.status == status)
            rows = s.execute(q).scalars().all()
            owners = dict(s.execute(select(Person.id, Person.name)).all())
        print_groups(rows, owners, rt.settings.tz)

    @app.command("reconcile")
    def reconcile_cmd(as_json: bool = typer.Option(False, "--json", help="输出 JSON"),
                      ask: bool = typer.Option(False, "--ask", help="把待确认的对应发给单位管理员，在聊天中回复“确认 1”或“不是”"),
                      ) -> None:
        """核对台账与平台上的群：哪些对上了、哪些只在台账上、哪些未登记（只看不改；--ask 发出待确认的询问）。"""
        import json

        from bot.cli import runtime
        from storage.reconcile import ask_reviews, reconcile_ledger

        rt = runtime()
        with rt.db.session() as s:
            rep = reconcile_ledger(s)
            asked = ask_reviews(s, rt.now(), rt.settings) if ask else None
        if asked is not None and not as_json:
            typer.echo(f"已向单位管理员发出 {asked} 条台账核对询问（工作时间内随汇总消息送达）。")
        if as_json:
            typer.echo(json.dumps(rep, ensure_ascii=False, indent=2))
            return
        from governance.labels import label
        typer.echo(f"已对上 {len(rep['matched'])} 个：")
        for m in rep["matched"]:
            why = label("match", m["by"])
            if m["member_jaccard"] is not None and m["by"] != "name":
                why += f"（{m['member_jaccard']:.0%}）"
            typer.echo(f"  “{m['ledger_name']}”（{m['ledger_unit'] or '未填单位'}） ↔ “{m['group_name']}”"
                       f"（{m['group_id']}），依据：{why}")
        d = rep["details"]

        def unit(x: str) -> str:
            return d[x]["unit"] or "未填单位"

        typer.echo(f"待确认 {len(rep['review'])} 个（像不止一个群，或像得不够，请单位管理员确认）：")
        for r in rep["review"]:
            cands = "；".join(f"{n}. “{d[c]['name']}”（{c}）" for n, c in enumerate(r["candidates"], 1))
            typer.echo(f"  “{d[r['ledger_id']]['name']}”（{unit(r['ledger_id'])}）可能是：{cands}")
        typer.echo(f"只在台账上 {len(rep['missing'])} 个（平台上没找到：可能已解散，或还没接入机器人）：")
        for x in rep["missing"]:
            typer.echo(f"  “{d[x]['name']}”（{unit(x)}）")
        typer.echo(f"未登记 {len(rep['unregistered'])} 个（平台上有、台账上没有、也没有报备）：")
        for x in rep["unregistered"]:
            typer.echo(f"  “{d[x]['name']}”（{x}{'，' + d[x]['unit'] if d[x]['unit'] else ''}）")

    roles_app = typer.Typer(help="人员角色", no_args_is_help=True)
    app.add_typer(roles_app, name="roles")

    @roles_app.command("set")
    def set_role(person_id: str = typer.Argument(..., help="人员编号（企业微信 UserID）"),
                 role: str = typer.Argument(..., help=_choices(ROLES)),
                 unit: str = typer.Option(None, "--unit", help="所属单位"),
                 name: str = typer.Option(None, "--name", help="姓名")) -> None:
        """设置人员角色（记入审计日志）。"""
        from bot.cli import runtime

        if role not in ROLES:
            typer.secho(f"角色“{role}”无效，可用：{_choices(ROLES)}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2)
        rt = runtime()
        now = rt.now()
        with rt.db.session() as s:
            given, person_id = person_id, identity.person_for(s, *identity.natural_account(person_id)) or person_id
            if given != person_id:  # an account linked to a person: a role is the person's, once
                typer.echo(f"{given} 是 {display_name(s, person_id)}（{person_id}）的账号。")
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
            audit.record(s, actor="cli", action="role_change", at=now, reason=f"{labels.role(old)} → {labels.role(role)}",
                         data={"person_id": person_id, "old": old, "new": role, "unit": p.unit})
        typer.echo(f"已将 {person_id} 设为{ROLES[role]}。")

    @roles_app.command("list")
    def list_roles() -> None:
        """列出非普通干部的人员。"""
        from bot.cli import runtime

        rt = runtime()
        with rt.db.session() as s:
            for p in s.execute(select(Person).where(Person.role != "cadre").order_by(Person.role, Person.id)).scalars():
                typer.echo(f"{p.id}\t{labels.role(p.role)}\t{p.unit or ''}\t{p.name or ''}")
