"""The ambiguous reconciliation matches, decided by a unit administrator with one tap in chat
(``确认 1`` / ``不是``): a confirmed match makes the ledger entry and the platform group one group for
good; a rejected pair is never proposed again; both audited."""
import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from storage import reconcile as rc
from storage.lifecycle import refresh_findings
from storage.models import (AuditRecord, Conversation, FindingRecord, Group, LedgerLink, LedgerRejection, Membership,
                            Notice, OutboxMessage, Person)
from storage.notices import deliver_due_notices
from governance.worktime import WorkTime
from tests.factories import Chat
from tests.storage import ledger_files as lf
from tests.storage.test_import import cli  # noqa: F401  (fixture)

FOREST = "森林防火群"


def _platform_group(s, gid, name, members, unit, at):
    s.add(Group(id=gid, platform="wecom", name=name, unit=unit, created_at=at, first_seen_at=at, source="chat",
                status="active", member_count=len(members)))
    s.flush()
    for p in members:
        s.add(Membership(group_id=gid, person_id=p))


@pytest.fixture
def county(cli, runtime, clock, tmp_path):
    """The county ledger imported; 森林防火群 looks like two groups on the platform (a review)."""
    f = lf.write_xlsx(tmp_path / "台账.xlsx", {"城关镇": lf.county_sheet()})
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0, r.output
    with runtime.db.session() as s:
        s.add_all([Person(id="ua", name="王管理", unit="城关镇", role="unit_admin", created_at=clock()),
                   Person(id="ub", unit="容美镇", role="unit_admin", created_at=clock()),
                   Person(id="boss", role="admin", created_at=clock())])
        _platform_group(s, "wa", "森林防火群", ["zhaoliu", "x1", "x2"], "城关镇", clock())
        _platform_group(s, "wb", "森林防火工作群", ["lisi", "y1", "y2"], "城关镇", clock())
    with runtime.db.session() as s:
        out = rc.reconcile_ledger(s)
    [item] = [r for r in out["review"] if out["details"][r["ledger_id"]]["name"] == FOREST]
    assert sorted(item["candidates"]) == ["wa", "wb"], out
    return f, item


def _ask(runtime, clock):
    with runtime.db.session() as s:
        return rc.ask_reviews(s, clock(), runtime.settings)


def test_confirm_one_makes_one_group_for_good(county, cli, runtime, clock):
    f, item = county
    lid, first = item["ledger_id"], item["candidates"][0]
    assert _ask(runtime, clock) == 1
    with runtime.db.session() as s:
        [n] = s.execute(select(Notice).where(Notice.kind == "reconcile_review")).scalars().all()
        assert n.person_id == "ua" and "台账中的“森林防火群”（城关镇）" in n.text and "确认 1" in n.text
        assert s.get(Conversation, "ua").intent == "reconcile_review"
    assert _ask(runtime, clock) == 0  # the same question is not asked twice
    chat = Chat(runtime, clock)
    reply = chat.say("ua", "随便说说")  # not an answer: the question again
    assert "请回复“确认 1”或“不是”" in reply
    reply = chat.say("ua", "确认 1")
    assert "已确认" in reply and "合为一个群" in reply and "全部处理完" in reply, reply
    with runtime.db.session() as s:
        assert s.get(Group, lid) is None and s.get(Conversation, "ua") is None
        g = s.get(Group, first)
        # the registration the ledger holds, on the platform group; its name and members are the platform's
        assert (g.owner_id, g.purpose, g.category, g.note) == ("zhaoliu", "森林防火", "专班", "与林业站共用")
        assert g.expires_at is not None and g.registered_at is not None and g.platform == "wecom"
        assert s.get(LedgerLink, lid).group_id == first
        rec = s.execute(select(AuditRecord).where(AuditRecord.action == "link")).scalar_one()
        assert rec.actor == "ua" and rec.group_id == first and rec.data["ledger_id"] == lid
        assert rc.history_ids(s, first) == [first, lid]
    out = json.loads(cli("reconcile", "--json").output)
    assert {"ledger_id": lid, "group_id": first, "confidence": 1.0} in [
        {k: m[k] for k in ("ledger_id", "group_id", "confidence")} for m in out["matched"]]
    assert lid not in out["missing"] and all(r["ledger_id"] != lid for r in out["review"])
    assert first not in out["unregistered"]
    # a re-import of the same ledger writes to the group: nothing changes, no twin comes back
    r = cli("import", "groups", str(f))
    assert "新增0，更新0，未变5" in r.output, r.output
    with runtime.db.session() as s:
        assert s.get(Group, lid) is None
        assert sorted(s.execute(select(Membership.person_id).where(Membership.group_id == first)).scalars()) == [
            "x1", "x2", "zhaoliu"]
        refresh_findings(s, clock(), runtime.settings)
    with runtime.db.session() as s:
        for fr in s.execute(select(FindingRecord).where(FindingRecord.status == "open")).scalars():
            assert lid not in fr.group_ids, (fr.kind, fr.group_ids)  # no zombie twin, no duplicate of itself


def test_not_is_stored_and_never_proposed_again(county, cli, runtime, clock):
    _, item = county
    lid = item["ledger_id"]
    _ask(runtime, clock)
    reply = Chat(runtime, clock).say("ua", "不是")
    assert "今后不再询问" in reply, reply
    with runtime.db.session() as s:
        got = sorted(s.execute(select(LedgerRejection.group_id).where(LedgerRejection.ledger_id == lid)).scalars())
        assert got == ["wa", "wb"]
        rec = s.execute(select(AuditRecord).where(AuditRecord.action == "link_reject")).scalar_one()
        assert rec.actor == "ua" and rec.data["groups"] == ["wa", "wb"]
        assert s.get(Group, lid) is not None  # nothing merged
    out = json.loads(cli("reconcile", "--json").output)
    assert lid in out["missing"] and all(r["ledger_id"] != lid for r in out["review"])
    assert {"wa", "wb"} <= set(out["unregistered"])
    clock.advance(days=8)
    assert _ask(runtime, clock) == 0  # a rejected pair is not asked again, not even next week


def test_a_link_never_joins_two_platform_groups_or_two_entries(county, runtime, clock):
    _, item = county
    lid = item["ledger_id"]
    with runtime.db.session() as s:
        rc.link(s, lid, "wa", actor="boss", now=clock(), settings=runtime.settings)
    with runtime.db.session() as s:
        with pytest.raises(rc.ReconcileError, match="已确认就是群"):
            rc.link(s, lid, "wb", actor="boss", now=clock(), settings=runtime.settings)
        other = next(g.id for g in s.execute(select(Group).where(Group.id.like("ledger:%"))).scalars())
        with pytest.raises(rc.ReconcileError, match="一个群只能对应一条台账记录"):
            rc.link(s, other, "wa", actor="boss", now=clock(), settings=runtime.settings)
        with pytest.raises(rc.ReconcileError, match="只能对应到平台上的群"):
            rc.link(s, other, lid, actor="boss", now=clock(), settings=runtime.settings)
        assert s.execute(select(LedgerLink)).scalars().all()[0].group_id == "wa"
        assert s.get(Group, other) is not None


def test_only_the_units_administrator_or_an_admin_decides(county, runtime, clock):
    with runtime.db.session() as s:
        assert rc.may_review(s.get(Person, "ua"), "城关镇") and rc.may_review(s.get(Person, "boss"), "城关镇")
        assert not rc.may_review(s.get(Person, "ub"), "城关镇")
        assert rc.reviewers(s, "城关镇") == ["ua"] and rc.reviewers(s, "没有管理员的单位") == ["boss"]
        # the administrator moved to another unit before answering: refused, nothing changed
        _ask(runtime, clock)
        s.get(Person, "ua").unit = "容美镇"
    reply = Chat(runtime, clock).say("ua", "确认 1")
    assert "不能确认" in reply
    with runtime.db.session() as s:
        assert s.execute(select(LedgerLink)).first() is None


def test_the_question_waits_for_working_time_and_goes_in_the_digest(county, runtime, clock):
    clock.set(datetime(2026, 11, 23, 14, 0, tzinfo=timezone.utc))  # 22:00 in Beijing
    _ask(runtime, clock)
    wt = WorkTime(tz=runtime.settings.tz)
    with runtime.db.session() as s:
        deliver_due_notices(s, now=clock(), budget=runtime.settings.weekly_message_budget, wt=wt)
        assert s.execute(select(OutboxMessage)).first() is None  # quiet outside working hours
    clock.set(datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc))  # 10:00
    with runtime.db.session() as s:
        deliver_due_notices(s, now=clock(), budget=runtime.settings.weekly_message_budget, wt=wt)
        [msg] = s.execute(select(OutboxMessage)).scalars().all()
        assert msg.recipient == "ua" and "确认 1" in msg.payload["text"]
    reply = Chat(runtime, clock).say("ua", "确认 2")  # the question's window starts when it can be read
    assert "已确认" in reply, reply


def test_the_dashboard_page_lists_and_decides(county, runtime, clock):
    from fastapi.testclient import TestClient

    from bot.app import create_app
    from tests.dashboard.test_dashboard_auth import ORIGIN, login

    _, item = county
    lid = item["ledger_id"]
    with TestClient(create_app(runtime=runtime, start_scheduler=False), base_url=ORIGIN) as c:
        csrf = login(c)
        page = c.get("/dashboard/reconcile")
        assert page.status_code == 200
        assert "待确认（1）" in page.text and "“森林防火群”（城关镇）" in page.text and "确认是这个群" in page.text
        assert "只在台账上（" in page.text and "未登记（" in page.text and ">ledger:" not in page.text  # ids only in the forms
        data = {"csrf": csrf, "ledger_id": lid, "group_id": "wb"}
        # CSRF and origin as every dashboard action
        assert c.post("/dashboard/reconcile/confirm", data={**data, "csrf": "wrong"},
                      headers={"Origin": ORIGIN}).status_code == 403
        assert c.post("/dashboard/reconcile/confirm", data=data,
                      headers={"Origin": "https://evil.example"}).status_code == 403
        with runtime.db.session() as s:
            assert s.get(Group, lid) is not None
        r = c.post("/dashboard/reconcile/confirm", data=data, headers={"Origin": ORIGIN})
        assert r.status_code == 200 and "已确认" in r.text and "待确认（0）" in r.text, r.text[:2000]
        # a second confirmation of the same entry is refused in Chinese, nothing changes
        r = c.post("/dashboard/reconcile/confirm", data={**data, "group_id": "wa"}, headers={"Origin": ORIGIN})
        assert "无需再确认" in r.text or "已确认过" in r.text
    with runtime.db.session() as s:
        assert s.get(LedgerLink, lid).group_id == "wb"
        assert s.execute(select(AuditRecord).where(AuditRecord.action == "link")).scalar_one().actor == "admin:dashboard"


def test_the_dashboard_rejects_all_candidates(county, runtime, clock):
    from fastapi.testclient import TestClient

    from bot.app import create_app
    from tests.dashboard.test_dashboard_auth import ORIGIN, login

    _, item = county
    with TestClient(create_app(runtime=runtime, start_scheduler=False), base_url=ORIGIN) as c:
        csrf = login(c)
        r = c.post("/dashboard/reconcile/reject", headers={"Origin": ORIGIN},
                   data={"csrf": csrf, "ledger_id": item["ledger_id"], "candidates": ",".join(item["candidates"])})
        assert "今后不再提示" in r.text and "待确认（0）" in r.text
        with runtime.db.session() as s:
            assert len(s.execute(select(LedgerRejection)).scalars().all()) == 2
            # confirmed later after all (by an admin who knows better): the rejection of that pair goes
            rc.link(s, item["ledger_id"], "wa", actor="boss", now=clock(), settings=runtime.settings)
            assert [g for _, g in s.execute(select(LedgerRejection.ledger_id, LedgerRejection.group_id))] == ["wb"]
        audit = c.get("/dashboard/audit").text
        # the entry's row is gone; its history reads with its name, never its id
        assert "森林防火群（台账）" in audit and ">ledger:" not in audit and "台账对应" in audit


def test_the_xlsx_report_has_the_reconciliation_sheet(county, runtime, clock):
    import io

    from openpyxl import load_workbook

    from storage import reports

    with runtime.db.session() as s:
        rc.link(s, county[1]["ledger_id"], "wa", actor="boss", now=clock(), settings=runtime.settings)
        s.add(Group(id="ledger:solo", platform="ledger", name="防汛群", unit="城关镇", created_at=clock(),
                    first_seen_at=clock(), source="ledger", status="active", member_count=0))
        s.flush()
        _platform_group(s, "wc", "防汛群", ["a", "b", "c"], "城关镇", clock())
        _platform_group(s, "wd", "防汛工作群", ["d", "e", "f"], "城关镇", clock())
    with runtime.db.session() as s:
        rep = reports.build_report(s, period="week", now=clock(), settings=runtime.settings)
        buf = io.BytesIO()
        reports.write_xlsx(s, rep, buf, runtime.settings)
    ws = load_workbook(io.BytesIO(buf.getvalue()))["台账核对"]
    rows = [list(r) for r in ws.iter_rows(values_only=True)]
    assert rows[0] == reports.RECONCILE_HEADERS
    kinds = [r[0] for r in rows[1:]]
    assert ["已对上", "森林防火群", "城关镇", "森林防火群", "企业微信", "城关镇", 3, "管理员已确认", "100%"] in rows
    assert "待确认（候选1）" in kinds and "待确认（候选2）" in kinds
    assert any(k.startswith("只在台账上") for k in kinds) and any(k.startswith("未报备") for k in kinds)
    assert not any(isinstance(v, str) and v.startswith("ledger:") for r in rows for v in r)


def test_the_cli_asks_and_shows_confirmed_links(county, cli, runtime, clock):
    r = cli("reconcile", "--ask")
    assert r.exit_code == 0 and "已向单位管理员发出 1 条台账核对询问" in r.output, r.output
    with runtime.db.session() as s:
        assert s.get(Conversation, "ua").intent == "reconcile_review"
        rc.link(s, county[1]["ledger_id"], "wa", actor="ua", now=clock(), settings=runtime.settings)
    r = cli("reconcile")
    assert "“森林防火群”（城关镇） ↔ “森林防火群”（wa），依据：管理员已确认" in r.output, r.output


def test_a_linked_entry_dropped_from_the_ledger_is_reported_missing(county, cli, runtime, clock, tmp_path):
    with runtime.db.session() as s:
        rc.link(s, county[1]["ledger_id"], "wa", actor="boss", now=clock(), settings=runtime.settings)
    rows = [r for r in lf.county_rows() if r[1] != FOREST]
    f = lf.write_xlsx(tmp_path / "新台账.xlsx", {"城关镇": [*lf.county_sheet()[:4], *rows]})
    r = cli("import", "groups", str(f))
    assert r.exit_code == 0 and "文件中已没有：“森林防火群”（城关镇" in r.output, r.output
    with runtime.db.session() as s:
        assert s.get(Group, "wa").status == "active" and s.get(LedgerLink, county[1]["ledger_id"]) is not None


def test_a_question_decided_on_the_dashboard_first_is_withdrawn(county, runtime, clock):
    clock.set(datetime(2026, 11, 23, 14, 0, tzinfo=timezone.utc))  # asked at night: waits for the morning
    _ask(runtime, clock)
    with runtime.db.session() as s:
        rc.link(s, county[1]["ledger_id"], "wa", actor="boss", now=clock(), settings=runtime.settings)
    clock.set(datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc))
    with runtime.db.session() as s:
        deliver_due_notices(s, now=clock(), budget=runtime.settings.weekly_message_budget,
                            wt=WorkTime(tz=runtime.settings.tz))
        assert s.execute(select(OutboxMessage)).first() is None
        assert s.execute(select(Notice.status).where(Notice.kind == "reconcile_review")).scalar_one() == "withdrawn"
    assert "全部处理完" in Chat(runtime, clock).say("ua", "确认 1")


def test_the_daily_job_asks(county, runtime, clock):
    from scheduler.jobs import JOBS, reconcile_reviews
    from scheduler.service import job_specs

    assert "reconcile_reviews" in dict(job_specs(runtime.settings)) and JOBS["reconcile_reviews"] is reconcile_reviews
    assert reconcile_reviews(runtime) == 1
    with runtime.db.session() as s:
        assert s.execute(select(Notice.person_id).where(Notice.kind == "reconcile_review")).scalar_one() == "ua"
