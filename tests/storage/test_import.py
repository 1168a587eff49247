"""The ledger and message importers on good and bad files, through the real CLI."""
import json
from datetime import date

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select
from typer.testing import CliRunner

from bot.cli import app
from storage.models import AuditRecord, Group, Membership, Message, Person

GOOD_CSV = """group_id,name,platform,owner_id,unit,category,purpose,created_at,expires_at,member_ids
g1,城关镇领导班子群,企业微信,zhang,城关镇,领导班子群,班子议事,2025-01-05,,zhang;li;wang
g2,秋粮收购专班,wecom,li,城关镇,临时群,秋粮收购调度,2026年10月1日,2026年12月31日,li；wang；zhao
g3,脱贫攻坚群,微信,zhao,下坪村,脱贫攻坚群,,2024-03-01,,zhao;a;b
"""
CHINESE_CSV = """群编号,群名称,平台,群主,单位,类别,用途,建群日期,到期日期,成员
c1,防汛抗旱群,钉钉,li,容美镇,临时群,防汛,2026-05-01,2026-12-01,li;x
"""
BAD_CSV = """group_id,name,platform,owner_id,unit,category,purpose,created_at,expires_at,member_ids
g1,好群,wecom,zhang,城关镇,机关群,,2025-01-05,,zhang
,无编号群,wecom,li,城关镇,临时群,,2026-01-01,,li
g3,坏日期群,wecom,li,城关镇,临时群,,2026-13-01,,li
g1,重复编号,wecom,li,城关镇,临时群,,2026-01-01,,li
g5,未知平台,MSN,li,城关镇,临时群,,2026-01-01,2025-01-01,li
"""


@pytest.fixture
def cli(db, monkeypatch):
    from config.settings import get_settings

    monkeypatch.setenv("QUNZHI_DATABASE_URL", db.url)
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, list(args))
    get_settings.cache_clear()


def state(db):
    with db.session() as s:
        return (
            [(g.id, g.name, g.platform, g.owner_id, g.unit, g.category, g.protected, g.temporary, g.expires_at,
              g.member_count, g.registered_at is not None) for g in s.execute(select(Group).order_by(Group.id)).scalars()],
            sorted(s.execute(select(Membership.group_id, Membership.person_id)).all()),
            s.execute(select(func.count()).select_from(AuditRecord)).scalar_one(),
        )


def test_import_good_csv_and_reimport_changes_nothing(cli, db, tmp_path):
    f = tmp_path / "ledger.csv"
    f.write_text(GOOD_CSV, encoding="utf-8")
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0, r.output
    assert "新增3" in r.output
    groups, members, audits = state(db)
    assert groups[0] == ("g1", "城关镇领导班子群", "wecom", "zhang", "城关镇", "领导班子群", True, False, None, 3, True)
    assert groups[1][:9] == ("g2", "秋粮收购专班", "wecom", "li", "城关镇", "临时群", False, True, date(2026, 12, 31))
    assert groups[2][2] == "wechat" and groups[2][6] is True
    assert ("g2", "zhao") in members and len(members) == 9
    assert audits == 1
    before = state(db)
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0 and "新增0，更新0，未变3" in r.output
    assert state(db) == before


def test_import_chinese_headers_gbk_and_update(cli, db, tmp_path):
    f = tmp_path / "台账.csv"
    f.write_bytes(CHINESE_CSV.encode("gb18030"))
    assert cli("import", "groups", str(f)).exit_code == 0
    f.write_bytes(CHINESE_CSV.replace("li;x", "li;x;y").encode("gb18030"))
    r = cli("import", "groups", str(f))
    assert "更新1" in r.output
    groups, members, _ = state(db)
    assert groups[0][:3] == ("c1", "防汛抗旱群", "dingtalk") and groups[0][9] == 3
    with db.session() as s:
        assert s.get(Person, "li") is not None


def test_changed_reimport_writes_exactly_the_changes(cli, db, tmp_path):
    f = tmp_path / "ledger.csv"
    f.write_text(GOOD_CSV, encoding="utf-8")
    assert cli("import", "groups", str(f)).exit_code == 0
    with db.session() as s:
        before = {g.id: (g.updated_at, g.created_at, g.registered_at) for g in s.execute(select(Group)).scalars()}
    groups0, members0, audits0 = state(db)
    # g1: wang leaves, qian and sun join; g2: purpose and unit change, members as before (other separator);
    # g3: no created date now (the stored one stays), members untouched by an empty cell.
    changed = GOOD_CSV.replace("zhang;li;wang", "zhang；qian;li;sun").replace("城关镇,临时群,秋粮收购调度", "东乡镇,临时群,秋粮外运")
    changed = changed.replace("2024-03-01,,zhao;a;b", ",,")
    f.write_text(changed, encoding="utf-8")
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0, r.output
    assert "新增0，更新2，未变1" in r.output
    groups, members, audits = state(db)
    assert audits == audits0 + 1
    assert set(members) ^ set(members0) == {("g1", "wang"), ("g1", "qian"), ("g1", "sun")}
    assert ("g1", "wang") in members0 and ("g1", "qian") in members
    by_id = {g[0]: g for g in groups}
    old = {g[0]: g for g in groups0}
    assert by_id["g1"][9] == 4 and by_id["g1"][:9] == old["g1"][:9]
    assert by_id["g2"][4] == "东乡镇" and by_id["g2"][5:] == old["g2"][5:] and by_id["g3"] == old["g3"]
    with db.session() as s:
        g2 = s.get(Group, "g2")
        assert g2.purpose == "秋粮外运"
        after = {g.id: (g.updated_at, g.created_at, g.registered_at) for g in s.execute(select(Group)).scalars()}
        rec = s.execute(select(AuditRecord).order_by(AuditRecord.id.desc())).scalars().first()
        assert rec.data["updated"] == 2 and rec.data["created"] == 0
    assert after["g3"] == before["g3"]  # unchanged: not even updated_at
    r = cli("import", "groups", str(f))
    assert "新增0，更新0，未变3" in r.output and state(db)[2] == audits0 + 1


def test_reimport_larger_than_a_chunk(cli, db, tmp_path, monkeypatch):
    import storage.importers as importers

    monkeypatch.setattr(importers, "CHUNK", 7)
    monkeypatch.setattr(importers, "MAX_PARAMS", 50)  # several statements per chunk as well
    head = GOOD_CSV.splitlines()[0]
    rows = [f"b{i:03d},群{i},wecom,o{i % 5},镇{i % 3},临时群,,2026-01-0{1 + i % 9},2026-12-31," + ";".join(
        f"p{(i + k) % 40}" for k in range(i % 6)) for i in range(40)]
    f = tmp_path / "big.csv"
    f.write_text("\n".join([head, *rows]) + "\n", encoding="utf-8")
    assert "新增40" in cli("import", "groups", str(f)).output
    groups, members, audits = state(db)
    assert len(groups) == 40 and len(members) == sum(i % 6 for i in range(40)) and audits == 1
    assert [g[9] for g in groups] == [i % 6 for i in range(40)]
    rows[3] = rows[3].replace("p3;p4;p5", "p3;p9")
    f.write_text("\n".join([head, *rows]) + "\n", encoding="utf-8")
    assert "新增0，更新1，未变39" in cli("import", "groups", str(f)).output
    _, members2, _ = state(db)
    assert set(members) ^ set(members2) == {("b003", "p4"), ("b003", "p5"), ("b003", "p9")}
    with db.session() as s:
        assert s.execute(select(func.count()).select_from(Person)).scalar_one() == 5


def test_group_created_meanwhile_is_diffed_not_skipped(cli, db, tmp_path, monkeypatch):
    """Another writer creates a group between the chunk's SELECT and its INSERT … ON CONFLICT DO NOTHING:
    the importer diffs it as an existing group instead of silently dropping the row."""
    import storage.importers as importers

    f = tmp_path / "ledger.csv"
    f.write_text(GOOD_CSV, encoding="utf-8")
    assert cli("import", "groups", str(f)).exit_code == 0
    real, calls = importers._existing_groups, []

    def blind_first(session, ids):
        calls.append(ids)
        return {} if len(calls) == 1 else real(session, ids)

    monkeypatch.setattr(importers, "_existing_groups", blind_first)
    f.write_text(GOOD_CSV.replace("zhang;li;wang", "zhang;li"), encoding="utf-8")
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0 and "新增0，更新1，未变2" in r.output, r.output
    groups, members, audits = state(db)
    assert ("g1", "wang") not in members and groups[0][9] == 2 and audits == 2


def test_import_xlsx(cli, db, tmp_path):
    wb = Workbook()
    ws = wb.active
    ws.append(["群编号", "群名称", "平台", "群主", "单位", "类别", "用途", "建群日期", "到期日期", "成员"])
    ws.append(["x1", "森林防火群", "企业微信", "wu", "容美镇", "临时群", "防火", date(2026, 3, 1), "2027年1月31日", "wu;a;b"])
    f = tmp_path / "ledger.xlsx"
    wb.save(f)
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0, r.output
    groups, _, _ = state(db)
    assert groups == [("x1", "森林防火群", "wecom", "wu", "容美镇", "临时群", False, True, date(2027, 1, 31), 3, True)]


def test_invalid_rows_all_reported_and_nothing_imported(cli, db, tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text(BAD_CSV, encoding="utf-8")
    r = cli("import", "groups", str(f))
    assert r.exit_code == 1
    out = r.output
    assert "第3行：群编号为空" in out
    assert "第4行" in out and "建群日期" in out
    assert "第5行" in out and "重复" in out
    assert "第6行" in out and "MSN" in out and "到期日期早于建群日期" in out
    assert "第2行" not in out
    assert "未导入任何数据" in out
    assert state(db) == ([], [], 0)


def test_skip_invalid_imports_the_good_rows(cli, db, tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text(BAD_CSV, encoding="utf-8")
    r = cli("import", "groups", str(f), "--skip-invalid")
    assert r.exit_code == 0 and "跳过无效行4" in r.output
    assert [g[0] for g in state(db)[0]] == ["g1"]


def test_unreadable_files_are_refused_with_chinese_errors(cli, db, tmp_path):
    f = tmp_path / "x.pdf"
    f.write_text("x")
    assert "不支持的文件类型" in cli("import", "groups", str(f)).output
    g = tmp_path / "noheader.csv"
    g.write_text("a,b,c\n1,2,3\n")
    assert "缺少必需的列" in cli("import", "groups", str(g)).output
    assert "找不到文件" in cli("import", "groups", str(tmp_path / "missing.csv")).output
    assert state(db) == ([], [], 0)


def _jsonl(tmp_path, rows, name="m.jsonl"):
    f = tmp_path / name
    f.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows),
                 encoding="utf-8")
    return f


def test_import_messages_idempotent_and_aggregates(cli, db, tmp_path):
    rows = [
        {"group_id": "g9", "sender_id": "a", "sent_at": "2026-10-01T09:00:00+08:00", "text": "请各村周五前上报秋粮数据", "msg_id": "1"},
        {"group_id": "g9", "sender_id": "b", "sent_at": "2026-11-01T09:00:00+08:00", "text": "收到", "msg_id": "2"},
        {"group_id": "g9", "sender_id": "c", "sent_at": "2026-11-02T09:00:00+08:00", "text": "簽到", "msg_id": "3"},
    ]
    f = _jsonl(tmp_path, rows)
    r = cli("import", "messages", str(f))
    assert r.exit_code == 0, r.output
    with db.session() as s:
        g = s.get(Group, "g9")
        assert (g.message_count, g.ritual_count, g.member_count) == (3, 2, 3)
        assert g.last_work_at.isoformat() == "2026-10-01T01:00:00+00:00"
        assert g.last_message_at.isoformat() == "2026-11-02T01:00:00+00:00"
        assert s.execute(select(func.count()).where(Message.text.is_not(None))).scalar_one() == 0
    assert "未变3" in cli("import", "messages", str(f)).output
    with db.session() as s:
        assert s.get(Group, "g9").message_count == 3
        assert s.execute(select(func.count()).select_from(Message)).scalar_one() == 3


def test_import_messages_bad_lines(cli, db, tmp_path):
    f = _jsonl(tmp_path, [
        {"group_id": "g9", "sender_id": "a", "sent_at": "2026-10-01T09:00:00+08:00", "text": "x", "msg_id": "1"},
        "{not json",
        {"group_id": "g9", "sender_id": "a", "sent_at": "2026-10-01T09:00:00", "text": "x", "msg_id": "2"},
        {"group_id": "g9", "sent_at": "yesterday", "text": 5, "msg_id": "3"},
    ])
    r = cli("import", "messages", str(f))
    assert r.exit_code == 1
    assert "第2行：不是有效的 JSON" in r.output and "第3行：sent_at 缺少时区" in r.output
    assert "第4行" in r.output and "sender_id" in r.output
    with db.session() as s:
        assert s.execute(select(func.count()).select_from(Message)).scalar_one() == 0


# --- archive coverage: day-one zombies ------------------------------------------------------------
COVER_LEDGER = """group_id,name,platform,owner_id,unit,category,purpose,created_at,expires_at,member_ids
z1,无消息群,企业微信,zhang,城关镇,工作群,,2025-01-05,,zhang;li;wang
z2,一条旧消息群,企业微信,zhang,城关镇,工作群,,2025-01-05,,zhang;li;zhao
ok,活跃群,企业微信,zhang,城关镇,工作群,,2025-01-05,,zhang;li;qian
d1,钉钉群,钉钉,zhang,城关镇,工作群,,2025-01-05,,zhang;li;sun
"""
COVER_MESSAGES = [  # scan at 2026-12-01: z2's only work message 60 days before, ok's 5 days before
    {"group_id": "z2", "sender_id": "li", "sent_at": "2026-10-02T10:00:00+08:00", "text": "请各村周五前上报秋粮数据",
     "msg_id": "m1"},
    {"group_id": "ok", "sender_id": "li", "sent_at": "2026-11-26T10:00:00+08:00", "text": "明天上午九点开调度会",
     "msg_id": "m2"},
]


def _zombies(db, settings, at):
    from storage.lifecycle import compute_findings

    with db.session() as s:
        return {(f.group_ids[0], f.score) for f in compute_findings(s, at, settings) if f.kind == "zombie"}


def _import_both(db, settings, tmp_path, ledger_at, archive_at, **kw):
    from storage.importers import import_ledger, import_messages

    ledger = tmp_path / "ledger.csv"
    ledger.write_text(COVER_LEDGER, encoding="utf-8")
    archive = _jsonl(tmp_path, COVER_MESSAGES)
    with db.session() as s:
        assert import_ledger(s, ledger, now=ledger_at, settings=settings).imported
    with db.session() as s:
        r = import_messages(s, archive, now=archive_at, settings=settings, **kw)
        assert r.imported
    return r


def test_archive_coverage_finds_day_one_zombies_whenever_the_import_ran(db, tmp_path):
    from datetime import datetime, timedelta, timezone

    from tests.conftest import make_settings

    settings = make_settings(database_url=db.url)
    scan_at = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)
    r = _import_both(db, settings, tmp_path, scan_at, scan_at)
    assert r.covered == 3  # z1, z2, ok: every known WeCom group; the DingTalk group is not covered
    first = _zombies(db, settings, scan_at)
    # z1 had no work message in the covered period: idle since it began (2026-10-02 10:00)
    assert {g for g, _ in first} == {"z1", "z2"}
    # the same files imported at other wall-clock times give the same findings
    for ledger_at, archive_at in ((scan_at - timedelta(days=3), scan_at - timedelta(days=1)),
                                  (scan_at - timedelta(hours=1), scan_at)):
        from tests.conftest import _truncate

        _truncate(db)
        _import_both(db, settings, tmp_path, ledger_at, archive_at)
        assert _zombies(db, settings, scan_at) == first
    with db.session() as s:
        rec = s.execute(select(AuditRecord).where(AuditRecord.reason.like("导入消息记录%"))).scalars().all()[-1]
        assert rec.data["covers"][0].startswith("2026-10-02T02:00:00") and rec.data["covered_groups"] == 3
        assert rec.data["platforms"] == ["wecom"]


def test_import_messages_covers_and_groups_in_file_only_options(cli, db, tmp_path):
    from datetime import datetime, timezone

    from tests.conftest import make_settings

    settings = make_settings(database_url=db.url)
    scan_at = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)
    ledger = tmp_path / "ledger.csv"
    ledger.write_text(COVER_LEDGER, encoding="utf-8")
    assert cli("import", "groups", str(ledger)).exit_code == 0
    archive = _jsonl(tmp_path, COVER_MESSAGES)
    r = cli("import", "messages", str(archive), "--groups-in-file-only")
    assert r.exit_code == 0, r.output
    assert "涉及2个群" in r.output
    assert "z1" not in {g for g, _ in _zombies(db, settings, scan_at)}  # not covered: no verdict yet
    r = cli("import", "messages", str(archive), "--covers", "2026-09-01..2026-11-30")
    assert r.exit_code == 0, r.output
    assert "2026-09-01 00:00至2026-11-30 23:59" in r.output and "涉及3个群" in r.output
    zombies = dict(_zombies(db, settings, scan_at))
    assert zombies["z1"] == 91.4  # since 2026-09-01 00:00 in Beijing (2026-08-31 16:00 UTC)
    assert "ok" not in zombies and "d1" not in zombies
    bad = cli("import", "messages", str(archive), "--covers", "2026-11-30..2026-09-01")
    assert bad.exit_code == 2 and "结束早于开始" in bad.output


def test_ledger_refuses_an_end_date_on_a_protected_category(cli, db, tmp_path):
    f = tmp_path / "ledger.csv"
    f.write_text("group_id,name,platform,owner_id,unit,category,purpose,created_at,expires_at,member_ids\n"
                 "g1,城关镇机关群,企业微信,zhang,城关镇,机关群,,2025-01-05,2026-12-31,zhang;li\n"
                 "g2,城关镇领导班子群,企业微信,zhang,城关镇,领导班子群,,2025-01-05,,zhang;li\n", encoding="utf-8")
    r = cli("import", "groups", str(f))
    assert r.exit_code == 1 and "第2行" in r.output and "受保护" in r.output and "到期" in r.output
    r = cli("import", "groups", str(f), "--skip-invalid")
    assert r.exit_code == 0, r.output
    groups, _, _ = state(db)
    assert [(g[0], g[6], g[8]) for g in groups] == [("g2", True, None)]  # the operator's import grants it
    with db.session() as s:
        rec = s.execute(select(AuditRecord).where(AuditRecord.action == "import")).scalar_one()
        assert rec.data["protected"] == 1


def test_ledger_refuses_an_end_date_on_a_group_already_protected(cli, db, tmp_path):
    f = tmp_path / "ledger.csv"
    f.write_text("group_id,name,platform,owner_id,unit,category,purpose,created_at,expires_at,member_ids\n"
                 "g1,城关镇调度群,企业微信,zhang,城关镇,工作群,,2025-01-05,,zhang;li\n", encoding="utf-8")
    assert cli("import", "groups", str(f)).exit_code == 0
    with db.session() as s:
        s.get(Group, "g1").protected = True  # 保护 by an administrator
    f.write_text("group_id,name,platform,owner_id,unit,category,purpose,created_at,expires_at,member_ids\n"
                 "g1,城关镇调度群,企业微信,zhang,城关镇,临时群,,2025-01-05,2026-12-31,zhang;li\n", encoding="utf-8")
    r = cli("import", "groups", str(f))
    assert r.exit_code == 1 and "第2行" in r.output and "受保护" in r.output
    groups, _, _ = state(db)
    assert [(g[0], g[5], g[6], g[7], g[8]) for g in groups] == [("g1", "工作群", True, False, None)]
