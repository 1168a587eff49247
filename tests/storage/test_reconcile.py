"""qunzhi reconcile: the county's ledger rows against the groups the platforms show."""
import json
from datetime import datetime, timezone

from governance.reconcile import GroupView, reconcile
from storage.models import Group, Membership
from tests.storage import ledger_files as lf
from tests.storage.test_import import cli  # noqa: F401  (fixture)

NOW = datetime(2026, 11, 23, 2, tzinfo=timezone.utc)


def _platform_group(s, gid, name, members, unit=None, registered=False):
    s.add(Group(id=gid, platform="wecom", name=name, unit=unit, created_at=NOW, first_seen_at=NOW, source="chat",
                status="active", member_count=len(members), registered_at=NOW if registered else None))
    s.flush()
    for p in members:
        s.add(Membership(group_id=gid, person_id=p))


def test_reconcile_matches_by_name_and_by_members(cli, db, tmp_path):
    f = lf.write_xlsx(tmp_path / "台账.xlsx", {"城关镇": lf.county_sheet()})
    assert cli("import", "groups", str(f)).exit_code == 0
    with db.session() as s:
        # same name in traditional characters, members as the ledger says
        _platform_group(s, "wrA", "城關鎮防汛抗旱工作群", ["zhangsan", "lisi", "wangwu"])
        # renamed on the platform, the same members
        _platform_group(s, "wrB", "党政办通知群", ["lisi", "wangwu", "zhaoliu"])
        # a similar name but other people: not the ledger's 森林防火群
        _platform_group(s, "wrC", "森林防火群", ["a1", "a2", "a3", "a4"], unit="城关镇")
        # registered through the bot: not 未登记 even without a ledger row
        _platform_group(s, "wrD", "乡村振兴群", ["x1", "x2", "x3"], registered=True)
    r = cli("reconcile", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    names = {m["ledger_name"]: (m["group_id"], m["by"]) for m in out["matched"]}
    assert names == {"城关镇防汛抗旱工作群": ("wrA", "name+members"), "城关镇党政办机关群": ("wrB", "members")}
    assert sorted(g["name"] for g in out["ledger_only"]) == ["人居环境整治群", "森林防火群", "秋粮收购专班群"]
    assert [g["group_id"] for g in out["unregistered"]] == ["wrC"]
    r = cli("reconcile")
    assert r.exit_code == 0, r.output
    assert "已对上 2 个" in r.output and "“城关镇党政办机关群”（城关镇） ↔ “党政办通知群”（wrB），依据：成员相同（100%）" in r.output
    assert "只在台账上 3 个" in r.output and "未登记 1 个" in r.output and "“森林防火群”（wrC" in r.output


def test_reconcile_pure_one_to_one_best_first():
    lg = [GroupView("ledger:1", "防汛群", "城关镇", frozenset("abc")),
          GroupView("ledger:2", "防汛群", "下坪村", frozenset())]
    gs = [GroupView("w1", "防汛群", None, frozenset("abcd")), GroupView("w2", "防汛工作群", "下坪村", frozenset())]
    out = reconcile(lg, gs)
    assert [(m.ledger_id, m.group_id) for m in out.matched] == [("ledger:1", "w1"), ("ledger:2", "w2")]
    assert out.ledger_only == [] and out.unregistered == []
    out = reconcile(lg[:1], [GroupView("w3", "防汛群", "下坪村", frozenset("xyz"))])
    assert out.matched == [] and out.ledger_only == ["ledger:1"] and out.unregistered == ["w3"]
