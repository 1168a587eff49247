"""The county's own 台账 as it is: xlsx/xls/ods/CSV, several sheets, title and 填报 rows above the header,
header synonyms, dates and categories as people write them."""
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import func, select

from storage import audit
from storage.models import Group, Membership
from tests.storage import ledger_files as lf
from tests.storage.test_import import cli  # noqa: F401  (fixture)

CG = "城关镇"


def groups(db):
    with db.session() as s:
        out = {}
        for g in s.execute(select(Group)).scalars():
            ms = sorted(s.execute(select(Membership.person_id).where(Membership.group_id == g.id)).scalars())
            out[g.name] = dict(id=g.id, owner=g.owner_id, unit=g.unit, category=g.category, temporary=g.temporary,
                               created=g.created_at.astimezone(timezone.utc).date() if g.created_at else None,
                               expires=g.expires_at, members=ms, count=g.member_count, note=g.note)
        return out


def check_county(got, fallback_unit=CG):
    a = got["城关镇防汛抗旱工作群"]
    assert (a["owner"], a["unit"], a["category"], a["temporary"]) == ("zhangsan", CG, "临时", True)
    # created_at is stored as local midnight (Asia/Shanghai): the UTC date is the day before
    assert a["expires"] == date(2026, 10, 31) and a["members"] == ["lisi", "wangwu", "zhangsan"]
    assert a["note"] == "汛期结束解散" and a["count"] == 3
    b = got["城关镇党政办机关群"]
    assert (b["category"], b["temporary"], b["expires"]) == ("常设", False, None)
    assert b["members"] == ["lisi", "wangwu", "zhaoliu"] and b["note"] is None
    c = got["秋粮收购专班群"]
    assert c["unit"] == fallback_unit and c["temporary"] is True and c["expires"] == date(2026, 12, 31)
    assert c["members"] == ["lisi", "wangwu", "zhangsan"]
    d = got["森林防火群"]
    assert d["temporary"] is True and d["expires"] == date(2026, 12, 31)  # 12月31日: the year of 填报日期
    assert d["members"] == ["lisi", "zhaoliu"]
    e = got["人居环境整治群"]
    assert (e["temporary"], e["expires"], e["members"]) == (False, None, ["zhangsan"])


def created_dates(db):
    from zoneinfo import ZoneInfo

    with db.session() as s:
        return {g.name: g.created_at.astimezone(ZoneInfo("Asia/Shanghai")).date()
                for g in s.execute(select(Group)).scalars()}


WRITERS = {"xlsx": lf.write_xlsx, "xls": lf.write_xls, "ods": lf.write_ods}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_county_workbook_with_two_sheets(cli, db, tmp_path, fmt):
    f = WRITERS[fmt](tmp_path / f"台账.{fmt}", {CG: lf.county_sheet(), "下坪村": lf.village_sheet()})
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0, r.output
    assert "新增7" in r.output
    got = groups(db)
    check_county(got)
    v = got["下坪村村务群"]
    assert (v["unit"], v["owner"], v["temporary"], v["members"]) == ("下坪村", "sunqi", False, ["sunqi", "zhouba"])
    assert got["下坪村防疫群"]["temporary"] is True and got["下坪村防疫群"]["expires"] == date(2026, 12, 31)
    assert created_dates(db)["森林防火群"] == date(2026, 1, 15)  # an Excel serial number
    assert created_dates(db)["秋粮收购专班群"] == date(2026, 9, 1)
    assert created_dates(db)["城关镇党政办机关群"] == date(2020, 3, 1)
    assert all(g["id"].startswith("ledger:") for g in got.values())
    r = cli("import", "groups", str(f))
    assert "新增0，更新0，未变7" in r.output, r.output
    assert groups(db) == got


def test_the_three_workbook_formats_give_the_same_ledger(cli, db, tmp_path):
    seen = []
    for fmt, write in sorted(WRITERS.items()):
        f = write(tmp_path / f"台账.{fmt}", {CG: lf.county_sheet(), "下坪村": lf.village_sheet()})
        r = cli("import", "groups", str(f))
        assert r.exit_code == 0, r.output
        seen.append((fmt, r.output.strip()))
        if len(seen) > 1:
            assert "新增0，更新0，未变7" in r.output, seen


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_county_csv_in_every_encoding(cli, db, tmp_path, encoding):
    f = lf.write_csv(tmp_path / "城关镇台账.csv", lf.county_sheet(), encoding)
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0, r.output
    check_county(groups(db), fallback_unit=None)  # a CSV has no sheet name to fall back on
    assert created_dates(db)["森林防火群"] == date(2026, 1, 15)


def test_header_synonyms_in_traditional_full_width_and_spaced_forms(cli, db, tmp_path):
    header = ["序 号", "工作群名稱", "群主姓名", "所屬單位", "性質", "主要用途", "成立時間", "使用期限", "成員名單", "備註"]
    f = lf.write_xlsx(tmp_path / "繁体.xlsx", {CG: lf.county_sheet(header=header)})
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0, r.output
    check_county(groups(db))


def test_unknown_columns_are_ignored_and_map_overrides(cli, db, tmp_path):
    rows = [["群的名字", "管事的人", "联系电话", "成员"], ["应急群", "zhangsan", "13800000000", "zhangsan、lisi"]]
    f = lf.write_xlsx(tmp_path / "x.xlsx", {"东乡镇": rows})
    r = cli("import", "groups", str(f))
    assert r.exit_code == 2 and "缺少必需的列" in r.output and "群名称" in r.output, r.output
    assert groups(db) == {}
    r = cli("import", "groups", str(f), "--map", "群的名字=群名称", "--map", "管事的人=owner_id")
    assert r.exit_code == 0, r.output
    g = groups(db)["应急群"]
    assert (g["owner"], g["unit"], g["members"]) == ("zhangsan", "东乡镇", ["lisi", "zhangsan"])
    r = cli("import", "groups", str(f), "--map", "群的名字=群名", "--map", "电话=群主")
    assert r.exit_code == 2 and "电话" in r.output and "找不到" in r.output, r.output
    r = cli("import", "groups", str(f), "--map", "群的名字=颜色")
    assert r.exit_code == 2 and "颜色" in r.output, r.output


def test_map_can_ignore_a_guessed_column(cli, db, tmp_path):
    rows = [["群名称", "群主", "人员"], ["应急群", "zhangsan", "这一列其实是说明"]]
    f = lf.write_xlsx(tmp_path / "x.xlsx", {"东乡镇": rows})
    r = cli("import", "groups", str(f), "--map", "人员=忽略")
    assert r.exit_code == 0, r.output
    assert groups(db)["应急群"]["members"] == []


def test_member_count_column_without_names(cli, db, tmp_path):
    rows = [["群名称", "群主", "成员数"], ["应急群", "zhangsan", 37], ["宣传群", "lisi", "12人"]]
    f = lf.write_xlsx(tmp_path / "x.xlsx", {"东乡镇": rows})
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0, r.output
    got = groups(db)
    assert (got["应急群"]["count"], got["应急群"]["members"]) == (37, [])
    assert got["宣传群"]["count"] == 12


def test_bad_values_name_their_sheet_and_row(cli, db, tmp_path):
    rows = [["群名称", "建群时间", "拟解散时间"], ["好群", "2026.5.1", "2026年12月"], ["坏群", "去年春天", "2026-13-01"]]
    f = lf.write_xlsx(tmp_path / "x.xlsx", {"东乡镇": [["东乡镇台账"], *rows]})
    r = cli("import", "groups", str(f))
    assert r.exit_code == 1, r.output
    assert "工作表“东乡镇” 第4行：" in r.output and "去年春天" in r.output and "工作表“东乡镇” 第3行" not in r.output
    assert groups(db) == {}


def test_the_template_format_still_reads_as_before(cli, db, tmp_path):
    from tests.storage.test_import import GOOD_CSV

    f = tmp_path / "ledger.csv"
    f.write_text(GOOD_CSV, encoding="utf-8")
    assert cli("import", "groups", str(f)).exit_code == 0
    got = groups(db)
    assert got["城关镇领导班子群"]["id"] == "g1" and got["秋粮收购专班"]["members"] == ["li", "wang", "zhao"]


def test_ledger_dates_as_people_write_them():
    from storage.ledger_format import parse_ledger_date

    today = date(2026, 11, 20)
    assert parse_ledger_date("2026.5.1", today) == date(2026, 5, 1)
    assert parse_ledger_date("2026/5/1", today) == date(2026, 5, 1)
    assert parse_ledger_date("2026年5月", today) == date(2026, 5, 1)
    assert parse_ledger_date("2026年2月", today, end=True) == date(2026, 2, 28)
    assert parse_ledger_date("5月1日", today) == date(2026, 5, 1)
    assert parse_ledger_date("5月1日", date(2027, 1, 3)) == date(2027, 5, 1)
    assert parse_ledger_date(46037, today) == date(2026, 1, 15)
    assert parse_ledger_date("46037", today) == date(2026, 1, 15)
    assert parse_ledger_date(46037.5, today) == date(2026, 1, 15)
    assert parse_ledger_date(datetime(2026, 1, 15, 8, 30), today) == date(2026, 1, 15)
    assert parse_ledger_date("长期", today) is None and parse_ledger_date("常设", today) is None
    assert parse_ledger_date("", today) is None and parse_ledger_date(None, today) is None
    for bad in ("去年", "2026-13-01", "12", 3.0, "0"):
        with pytest.raises(ValueError) as e:
            parse_ledger_date(bad, today)
        assert "日期" in str(e.value) or "不是" in str(e.value)


def test_members_as_people_write_them():
    from storage.importers import _members

    def parse_members(v):
        return _members(v)[0]

    assert parse_members("a、b，c,d；e;f g\nh\r\ni　j") == list("abcdefghij")
    assert parse_members("zhang;li") == ["zhang", "li"]
    assert parse_members("") == []


# --- people by name --------------------------------------------------------------------------------------
ROSTER = [["城关镇干部花名册"], ["填报单位：城关镇党政办"],
          ["序号", "姓名", "单位", "职务", "企业微信账号", "钉钉 userid", "飞书 open_id"],
          [1, "张三", "城关镇", "镇长", "zhangsan", "dd_zs", None],
          [2, "李四", "城关镇", "党政办主任", "lisi", None, "ou_ls"],
          [3, "王五", "城关镇", "干事", "wangwu", None, None],
          [4, "王五", "下坪村", "村支书", "wangwu2", None, None],
          [5, "赵六", "城关镇", "干事", "zhaoliu", None, None],
          [6, "赵六", "城关镇", "司机", "zhaoliu2", None, None],
          [7, "孫七", "下坪村", "村主任", None, "dd_sq", None]]

NAMES = ["张三、李四、王五", "李四，王五 赵六", "王五;张三\n李四", "赵六,  李四", "张三、钱八"]


def roster_file(tmp_path):
    return lf.write_xlsx(tmp_path / "花名册.xlsx", {"城关镇": ROSTER})


def test_import_people_reads_the_roster(cli, db, tmp_path):
    from storage.models import Person

    r = cli("import", "people", str(roster_file(tmp_path)))
    assert r.exit_code == 0, r.output
    assert "新增7" in r.output
    from storage.identity import accounts_for

    with db.session() as s:
        zs = s.get(Person, "zhangsan")
        assert (zs.name, zs.unit, zs.title) == ("张三", "城关镇", "镇长")
        assert accounts_for(s, "zhangsan") == {"wecom": "zhangsan", "dingtalk": "dd_zs"}
        assert accounts_for(s, "lisi") == {"wecom": "lisi", "feishu": "ou_ls"}
        # known by DingTalk only: the id is scoped, so no WeCom userid can ever be this person
        assert s.get(Person, "dingtalk:dd_sq").name == "孫七" and s.get(Person, "dd_sq") is None
        assert accounts_for(s, "dingtalk:dd_sq") == {"dingtalk": "dd_sq"}
    r = cli("import", "people", str(roster_file(tmp_path)))
    assert "新增0，更新0，未变7" in r.output, r.output


def test_the_roster_links_a_persons_accounts_and_refuses_someone_elses(cli, db, tmp_path):
    """Accounts seen before the roster: 张三's WeChat (through the bridge) was its own unclaimed
    person and joins him; 李四's DingTalk id is already 王五's, so 李四's row changes nothing."""
    from storage import identity
    from storage.models import AuditRecord, Person, PersonAccount

    at = datetime(2026, 11, 1, tzinfo=timezone.utc)
    with db.session() as s:
        for pid, name in (("wechat:zs", None), ("wangwu", "王五"), ("lisi", None)):
            s.add(Person(id=pid, name=name, role="cadre", created_at=at))
        s.flush()
        s.add(PersonAccount(platform="wechat", account_id="zs", person_id="wechat:zs", linked_at=at))
        s.add(PersonAccount(platform="dingtalk", account_id="dd_ww", person_id="wangwu", linked_at=at))
    rows = [["姓名", "单位", "企业微信账号", "微信号", "钉钉 userid"], ["张三", "城关镇", "zhangsan", "zs", None],
            ["李四", "城关镇", "lisi", None, "dd_ww"], ["赵六", "城关镇", None, "zl", None]]
    r = cli("import", "people", str(lf.write_xlsx(tmp_path / "花名册.xlsx", {"名单": rows})))
    assert r.exit_code == 0, r.output
    assert "工作表“名单” 第3行" in r.output and "钉钉账号“dd_ww”已属于王五（wangwu）" in r.output, r.output
    assert "这一行未导入" in r.output and "新增2，更新0，未变0" in r.output, r.output
    with db.session() as s:
        assert identity.accounts_for(s, "zhangsan") == {"wecom": "zhangsan", "wechat": "zs"}
        assert identity.person_for(s, "wechat", "zs") == "zhangsan"
        assert s.get(Person, "lisi").name is None  # the refused row changed nothing
        assert identity.accounts_for(s, "wangwu") == {"dingtalk": "dd_ww"}
        assert s.get(Person, "wechat:zl").name == "赵六"
        assert [a.reason for a in s.execute(select(AuditRecord).order_by(AuditRecord.id)).scalars()] == [
            "微信账号“zs”关联到张三（zhangsan）", "导入花名册 花名册.xlsx"]
        assert audit.verify(s).ok


def test_a_later_roster_adds_a_wecom_account_to_a_person_known_by_dingtalk(cli, db, tmp_path):
    from governance.events import Event
    from storage import identity

    assert cli("import", "people", str(roster_file(tmp_path))).exit_code == 0
    rows = [["姓名", "单位", "企业微信账号", "钉钉 userid"], ["孫七", "下坪村", "sunqi", "dd_sq"]]
    r = cli("import", "people", str(lf.write_xlsx(tmp_path / "花名册2.xlsx", {"名单": rows})))
    assert r.exit_code == 0 and "新增0，更新1，未变0" in r.output, r.output
    with db.session() as s:
        assert identity.accounts_for(s, "dingtalk:dd_sq") == {"dingtalk": "dd_sq", "wecom": "sunqi"}
        e = Event(platform="wecom", kind="message", sender_id="sunqi", at=datetime(2026, 11, 2, tzinfo=timezone.utc))
        assert identity.resolve_senders(s, [e])[0].sender_id == "dingtalk:dd_sq"
        assert identity.account_ids(s, ["dingtalk:dd_sq"], "wecom") == {"dingtalk:dd_sq": "sunqi"}


def test_roster_rows_without_name_or_account_are_refused(cli, db, tmp_path):
    rows = [["姓名", "单位", "userid"], ["张三", "城关镇", "zhangsan"], [None, "城关镇", "x1"], ["李四", "城关镇", None],
            ["王五", "城关镇", "zhangsan"]]
    f = lf.write_xlsx(tmp_path / "花名册.xlsx", {"名单": rows})
    r = cli("import", "people", str(f))
    assert r.exit_code == 1, r.output
    assert "工作表“名单” 第3行：姓名为空" in r.output and "工作表“名单” 第4行" in r.output and "账号" in r.output
    assert "工作表“名单” 第5行" in r.output and "重复" in r.output
    assert "未导入任何数据" in r.output


def test_members_and_owners_written_as_names_are_resolved(cli, db, tmp_path):
    assert cli("import", "people", str(roster_file(tmp_path))).exit_code == 0
    owners = ["张三", "李四", "王五", "赵六", "张三"]
    sheet = [[lf.TITLE], [lf.FILLED], [], lf.COUNTY_HEADER,
             *[r[:2] + [o] + r[3:] for r, o in zip(lf.county_rows(NAMES), owners)]]
    f = lf.write_xlsx(tmp_path / "城关镇台账.xlsx", {"城关镇": sheet})
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0, r.output
    got = groups(db)
    # 王五: one in 城关镇 (the group's unit), one in 下坪村 -> the unit decides
    assert got["城关镇防汛抗旱工作群"]["members"] == ["lisi", "wangwu", "zhangsan"]
    assert got["城关镇防汛抗旱工作群"]["owner"] == "zhangsan"
    # 赵六: two people in 城关镇 -> a warning, kept as a name: counted, not a person
    b = got["城关镇党政办机关群"]
    assert b["members"] == ["lisi", "wangwu"] and b["count"] == 3
    assert "工作表“城关镇” 第6行" in r.output and "赵六" in r.output
    d = got["森林防火群"]
    assert d["owner"] is None and d["members"] == ["lisi"] and d["count"] == 2
    e = got["人居环境整治群"]
    assert e["members"] == ["zhangsan"] and e["count"] == 2
    assert "工作表“城关镇” 第9行" in r.output and "钱八" in r.output and "找不到" in r.output
    with db.session() as s:
        from storage.models import Person

        assert s.get(Person, "钱八") is None and s.get(Person, "赵六") is None
        g = s.execute(select(Group).where(Group.name == "人居环境整治群")).scalar_one()
        assert g.ledger_names == ["钱八"]
    r = cli("import", "groups", str(f))
    assert "新增0，更新0，未变5" in r.output, r.output


def test_the_county_workbook_as_it_is(cli, db, tmp_path):
    """Title row merged across the columns, the 填报 line, the county's headers, real date cells and
    members as names; the roster imported first."""
    assert cli("import", "people", str(roster_file(tmp_path))).exit_code == 0
    names = ["张三、李四、王五"] * 5
    sheet = lf.county_sheet(names)
    for r in sheet[4:]:
        r[2] = "张三"
    f = lf.write_xlsx(tmp_path / "城关镇工作群台账.xlsx", {"城关镇": sheet})
    from openpyxl import load_workbook

    ws = load_workbook(f).active
    assert "A1:J1" in {str(m) for m in ws.merged_cells.ranges} and ws["G5"].is_date
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0, r.output
    assert "新增5" in r.output and "提醒" not in r.output
    got = groups(db)
    assert all(g["members"] == ["lisi", "wangwu", "zhangsan"] and g["owner"] == "zhangsan" for g in got.values())
    assert got["城关镇防汛抗旱工作群"]["expires"] == date(2026, 10, 31)


def test_unresolved_names_count_in_no_per_person_figure(cli, db, tmp_path):
    rows = [["群名称", "群主", "成员"]] + [[f"群{i}", "zhangsan", "zhangsan、无名氏"] for i in range(3)]
    f = lf.write_xlsx(tmp_path / "x.xlsx", {"东乡镇": rows})
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0 and r.output.count("无名氏") == 3, r.output
    with db.session() as s:
        per_person = dict(s.execute(select(Membership.person_id, func.count()).group_by(Membership.person_id)).all())
        assert per_person == {"zhangsan": 3}
        assert [g.member_count for g in s.execute(select(Group)).scalars()] == [2, 2, 2]


# --- groups without ids ------------------------------------------------------------------------------------
def county_file(tmp_path, rows=None, name="城关镇台账.xlsx"):
    body = rows if rows is not None else lf.county_rows()
    return lf.write_xlsx(tmp_path / name, {CG: [[lf.TITLE], [lf.FILLED], [], lf.COUNTY_HEADER, *body]})


def test_an_edited_file_changes_only_what_was_edited(cli, db, tmp_path):
    f = county_file(tmp_path)
    assert cli("import", "groups", str(f)).exit_code == 0
    before = groups(db)
    rows = lf.county_rows()
    rows[1][5] = "党政办日常工作"
    rows[3][8] = "zhaoliu,  lisi、sunqi"
    f = county_file(tmp_path, rows)
    r = cli("import", "groups", str(f))
    assert "新增0，更新2，未变3" in r.output, r.output
    after = groups(db)
    assert {k: v["id"] for k, v in after.items()} == {k: v["id"] for k, v in before.items()}
    assert after["森林防火群"]["members"] == ["lisi", "sunqi", "zhaoliu"]
    assert {k for k in after if after[k] != before[k]} == {"森林防火群"}  # a purpose is not in groups()
    with db.session() as s:
        assert s.get(Group, before["城关镇党政办机关群"]["id"]).purpose == "党政办日常工作"


def test_a_renamed_row_is_recognised_by_its_members_and_reported(cli, db, tmp_path):
    assert cli("import", "groups", str(county_file(tmp_path))).exit_code == 0
    before = groups(db)
    rows = lf.county_rows()
    rows[0][1] = "城关镇防汛工作群"  # same members: recognised by them
    rows[3][1] = "城关镇森林防火群"  # two members only: recognised by owner, created date and purpose
    r = cli("import", "groups", str(county_file(tmp_path, rows)))
    assert r.exit_code == 0, r.output
    assert "新增0，更新2，未变3，改名2" in r.output, r.output
    assert "改名：“城关镇防汛抗旱工作群” → “城关镇防汛工作群”" in r.output and "第5行" in r.output
    assert "改名：“森林防火群” → “城关镇森林防火群”" in r.output
    after = groups(db)
    assert after["城关镇防汛工作群"]["id"] == before["城关镇防汛抗旱工作群"]["id"]
    assert after["城关镇森林防火群"]["id"] == before["森林防火群"]["id"]
    assert len(after) == 5 and "文件中已没有" not in r.output
    with db.session() as s:
        from storage.models import AuditRecord

        rec = s.execute(select(AuditRecord).order_by(AuditRecord.id.desc())).scalars().first()
        assert len(rec.data["renamed"]) == 2


def test_a_new_name_with_other_members_is_a_new_group(cli, db, tmp_path):
    assert cli("import", "groups", str(county_file(tmp_path))).exit_code == 0
    rows = lf.county_rows()
    rows[0][1:] = ["城关镇秸秆禁烧群", "sunqi", "城关镇", "临时", "禁烧", date(2026, 10, 1), None, "sunqi、zhouba、qianba",
                   None]
    r = cli("import", "groups", str(county_file(tmp_path, rows)))
    assert "新增1，更新0，未变4" in r.output, r.output
    assert "改名" not in r.output
    assert "文件中已没有：“城关镇防汛抗旱工作群”" in r.output


def test_names_that_normalise_alike_are_an_error_naming_both_rows(cli, db, tmp_path):
    rows = lf.county_rows()
    rows[2][1], rows[2][3] = "城關鎮 防汛抗旱工作群！", "城关镇"
    r = cli("import", "groups", str(county_file(tmp_path, rows)))
    assert r.exit_code == 1, r.output
    line = next(ln for ln in r.output.splitlines() if "工作表“城关镇” 第7行" in ln)
    assert "第5行" in line and "同名" in line
    assert groups(db) == {}


def test_a_row_removed_from_the_file_is_reported_not_deleted(cli, db, tmp_path):
    assert cli("import", "groups", str(county_file(tmp_path))).exit_code == 0
    rows = lf.county_rows()
    del rows[4]
    r = cli("import", "groups", str(county_file(tmp_path, rows)))
    assert r.exit_code == 0, r.output
    assert "新增0，更新0，未变4" in r.output
    assert "文件中已没有：“人居环境整治群”（城关镇" in r.output and "未删除" in r.output
    got = groups(db)
    assert "人居环境整治群" in got
    with db.session() as s:
        assert s.get(Group, got["人居环境整治群"]["id"]).status == "active"


# --- dry run ----------------------------------------------------------------------------------------------
def everything(db):
    from storage.models import AuditRecord, Person

    with db.session() as s:
        return [s.execute(select(func.count()).select_from(m)).scalar_one()
                for m in (Group, Membership, Person, AuditRecord)]


def test_dry_run_shows_mapping_rows_and_problems_and_writes_nothing(cli, db, tmp_path):
    rows = lf.county_rows(["张三、lisi", None, None, None, None])
    rows[4][6] = "去年春天"
    f = county_file(tmp_path, rows)
    r = cli("import", "groups", str(f), "--dry-run")
    assert r.exit_code == 1, r.output
    out = r.output
    assert "不写入任何数据" in out and "未写入任何数据" in out
    assert "工作表“城关镇”：表头在第4行" in out and "填报日期 2026-11-20" in out
    for line in ("“群名称” → 群名称", "“群主” → 群主", "“所属单位” → 单位", "“群类型” → 类别", "“建群时间” → 建群日期",
                 "“拟解散时间” → 到期日期", "“成员” → 成员", "“备注” → 备注", "不读取：“序号”"):
        assert line in out, line
    assert "工作表“城关镇” 第5行：群名称 城关镇防汛抗旱工作群；单位 城关镇；群主 zhangsan" in out
    assert "建群日期 2026-05-01；到期日期 2026-10-31；成员 lisi、张三（未匹配）（2人）" in out
    assert "工作表“城关镇” 第9行：建群日期“去年春天”不是日期" in out
    assert "成员“张三”在花名册中找不到" in out and "第5行" in out
    assert "有无效行" in out
    assert everything(db) == [0, 0, 0, 0]


def test_dry_run_of_an_edit_counts_what_would_change(cli, db, tmp_path):
    assert cli("import", "groups", str(county_file(tmp_path))).exit_code == 0
    before = (everything(db), groups(db))
    rows = lf.county_rows()
    rows[0][1] = "城关镇防汛工作群"
    rows[1][5] = "别的用途"
    del rows[4]
    r = cli("import", "groups", str(county_file(tmp_path, rows)), "--dry-run")
    assert r.exit_code == 0, r.output
    assert "预演结果：新增0，更新2，未变2，改名1；可以导入。" in r.output
    assert "改名：“城关镇防汛抗旱工作群” → “城关镇防汛工作群”" in r.output
    assert "文件中已没有：“人居环境整治群”" in r.output
    assert (everything(db), groups(db)) == before


def test_dry_run_of_the_roster(cli, db, tmp_path):
    r = cli("import", "people", str(roster_file(tmp_path)), "--dry-run")
    assert r.exit_code == 0, r.output
    assert "“企业微信账号” → 企业微信账号" in r.output and "“钉钉 userid” → 钉钉 userid" in r.output
    assert "预演结果：新增7" in r.output
    assert everything(db) == [0, 0, 0, 0]


def test_a_sheet_without_a_header_is_skipped_with_a_warning(cli, db, tmp_path):
    f = lf.write_xlsx(tmp_path / "台账.xlsx", {"填表说明": [["请按下表填写，成员用顿号分隔。"], ["联系人：王五"]],
                                              CG: lf.county_sheet()})
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0, r.output
    assert "工作表“填表说明”：没有找到表头" in r.output and "新增5" in r.output


def test_an_id_column_left_empty_throughout_is_read_as_no_ids(cli, db, tmp_path):
    header = ["群编号", *lf.COUNTY_HEADER[1:]]
    sheet = lf.county_sheet(header=header)
    for r in sheet[4:]:
        r[0] = None
    f = lf.write_xlsx(tmp_path / "台账.xlsx", {CG: sheet})
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0, r.output
    assert all(g["id"].startswith("ledger:") for g in groups(db).values()) and len(groups(db)) == 5
    sheet[5][0] = "wrOJ1"  # one id given: the others are missing theirs
    f = lf.write_xlsx(tmp_path / "台账2.xlsx", {CG: sheet})
    r = cli("import", "groups", str(f))
    assert r.exit_code == 1 and r.output.count("群编号为空") == 4, r.output


def test_a_filing_date_in_its_own_cell_gives_the_year(cli, db, tmp_path):
    sheet = lf.county_sheet()
    sheet[1] = ["填报单位：", "城关镇", None, "填报日期：", date(2027, 3, 1)]
    f = lf.write_xlsx(tmp_path / "台账.xlsx", {CG: sheet})
    assert cli("import", "groups", str(f)).exit_code == 0
    assert groups(db)["森林防火群"]["expires"] == date(2027, 12, 31)


def test_numbered_empty_rows_totals_footers_and_repeated_headers_are_not_groups(cli, db, tmp_path):
    sheet = lf.county_sheet()
    sheet += [[6], [7, None, None, None, None, None, None, None, None, None], lf.COUNTY_HEADER,
              [8, "村级防汛群", "zhangsan", "城关镇", "临时", "防汛", date(2026, 6, 1), None, "zhangsan、lisi", None],
              [None, "合计", None, None, None, None, None, None, "36", None],
              ["填表人：王五", None, None, None, None, None, "审核人：张三"],
              [None, "填表人：王五　　联系电话：138xxxx"]]
    f = lf.write_xlsx(tmp_path / "台账.xlsx", {CG: sheet})
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0, r.output
    assert "新增6" in r.output
    assert set(groups(db)) == {*(row[1] for row in lf.county_rows()), "村级防汛群"}


def test_a_row_moved_to_another_unit_keeps_its_group(cli, db, tmp_path):
    f = lf.write_xlsx(tmp_path / "台账.xlsx", {CG: lf.county_sheet(), "下坪村": lf.village_sheet()})
    assert cli("import", "groups", str(f)).exit_code == 0
    before = groups(db)
    sheet = lf.county_sheet()
    sheet[4][3] = "下坪村"  # 城关镇防汛抗旱工作群 now belongs to 下坪村
    f = lf.write_xlsx(tmp_path / "台账2.xlsx", {CG: sheet, "下坪村": lf.village_sheet()})
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0, r.output
    assert "新增0，更新1，未变6" in r.output and "单位改为“下坪村”" in r.output, r.output
    after = groups(db)
    assert after["城关镇防汛抗旱工作群"]["id"] == before["城关镇防汛抗旱工作群"]["id"]
    assert after["城关镇防汛抗旱工作群"]["unit"] == "下坪村"


def test_map_wins_over_a_guess_for_the_same_field(cli, db, tmp_path):
    rows = [["群名称", "成员", "成员账号"], ["应急群", "张三、李四", "zhangsan;lisi"]]
    f = lf.write_xlsx(tmp_path / "x.xlsx", {"东乡镇": rows})
    r = cli("import", "groups", str(f), "--map", "成员账号=成员", "--dry-run")
    assert r.exit_code == 0 and "“成员账号” → 成员" in r.output and "不读取：“成员”" in r.output, r.output
    assert cli("import", "groups", str(f), "--map", "成员账号=成员").exit_code == 0
    assert groups(db)["应急群"]["members"] == ["lisi", "zhangsan"]


def test_hidden_sheets_are_not_read(cli, db, tmp_path):
    from openpyxl import load_workbook

    f = lf.write_xlsx(tmp_path / "台账.xlsx", {CG: lf.county_sheet(), "旧表": lf.village_sheet()})
    wb = load_workbook(f)
    wb["旧表"].sheet_state = "hidden"
    wb.save(f)
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0 and "新增5" in r.output, r.output
    assert "工作表“旧表”：已隐藏，未读取" in r.output
