"""Nothing a user reads is in English or an internal code.

A county with groups in every status, findings of every kind, audit records of every action,
notices and outbox rows of every kind and status and persons of every role; then every
dashboard page and download, every CLI table and report, the digest and the /local inbox are
read, and any ASCII word that is not a group or person id, a URL, a file name or an option name
fails the test.

Machine outputs keep their codes on purpose and are not checked: ``qunzhi scan --json``,
``qunzhi report --format json``, the JSON download and the fields of the JSON endpoints that
the pages do not display.
"""
from __future__ import annotations

import html.parser
import json
import re
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from governance import labels
from storage import audit
from storage.models import (AuditRecord, FindingRecord, FormalismReport, Group, Membership, Notice, OutboxMessage,
                            Person, PulseResponse, UselessVote)
from tests.dashboard.conftest import IN_WEEK, NOW
from tests.dashboard.surfaces import (KINDS, STATUSES, cli_runner, cli_surfaces, digest_text, local_surfaces,
                                      web_surfaces)

ROLES = ("cadre", "unit_admin", "admin", "commission")
PLATFORMS = ("wecom", "aibot", "wechat", "bridge", "ledger", "local", "archive", "dingtalk", "feishu", "qq")
FINDING_ACTIONS = ("warn", "dissolve", "merge", "review", "none")
AUDIT_ACTIONS = tuple(labels.ACTIONS)
OPERATORS = tuple(labels.OPERATORS)
MESSAGE_KINDS = tuple(labels.MESSAGE_KINDS)
OUTBOX_STATUSES = tuple(labels.OUTBOX_STATUSES)
# Not identifiers but names of formats and products, written the same way in Chinese text.
PROPER_NAMES = {"Excel", "Word", "JSON", "CSV", "QQ"}


def _person(s, pid, name, role, unit="城关镇"):
    s.add(Person(id=pid, name=name, unit=unit, role=role, created_at=NOW - timedelta(days=400)))


def _group(s, gid, name, *, status="active", platform="wecom", source="chat", idle=45, members=("a", "b"), **kw):
    t = NOW - timedelta(days=300)
    g = Group(id=gid, platform=platform, source=source, name=name, unit="城关镇", owner_id="a", created_at=t,
              first_seen_at=t, registered_at=t, status=status, member_count=len(members), message_count=40,
              ritual_count=4, keep_count=0, last_work_at=NOW - timedelta(days=idle),
              last_message_at=NOW - timedelta(days=2), updated_at=t, **kw)
    s.add(g)
    s.flush()
    for p in members:
        s.add(Membership(group_id=gid, person_id=p, joined_at=t))
    return g


def build_county(db) -> None:
    with db.session() as s:
        for pid, name, role in [("a", "张镇长", "cadre"), ("b", "李主任", "cadre"), ("ua", "陈书记", "unit_admin"),
                                ("adm", "管理员", "admin"), ("d", "赵纪委", "commission")]:
            _person(s, pid, name, role)
        s.flush()
        # every status; the sweep has something to do for each kind of step
        _group(s, "z-active", "防汛抗旱群", idle=60)                                       # warn
        _group(s, "z-warned", "秋粮收购专班", status="warned", idle=60,                      # dissolve
               warned_at=NOW - timedelta(days=12), warning_sent_at=NOW - timedelta(days=11))
        _group(s, "u-warned", "城关镇机关群", status="warned", idle=1, protected=False,       # unwarn
               warned_at=NOW - timedelta(days=3), warning_sent_at=NOW - timedelta(days=3))
        _group(s, "p-dissolved", "森林防火群", status="dissolved", idle=200,                # purge
               dissolved_at=NOW - timedelta(days=40), dissolve_method="order")
        _group(s, "r-dissolved", "人口普查群", status="dissolved", idle=200,
               dissolved_at=NOW - timedelta(days=3), dissolve_method="order")
        _group(s, "o-dissolving", "禁毒宣传群", status="dissolving", platform="ledger", source="ledger",
               dissolve_method="order", order_deadline=NOW - timedelta(days=1),              # escalate
               dissolve_state={"method": "order", "members": ["a", "b"], "done": []})
        _group(s, "c-dissolving", "乡村振兴群", status="dissolving", dissolve_method="appchat",  # resume
               dissolve_state={"method": "appchat", "members": ["a", "b"], "done": ["notice"]})
        _group(s, "c-restoring", "安全生产群", status="restoring", dissolve_method="appchat",
               dissolve_state={"method": "appchat", "members": ["a", "b"], "done": ["notice", "remove"],
                               "restore": {"done": []}})
        _group(s, "g-purged", "老旧改造群", status="purged", idle=400, dissolved_at=NOW - timedelta(days=100))
        _group(s, "g-merged", "文明创建群", status="merged", idle=400, dissolved_at=NOW - timedelta(days=100),
               merged_into="z-active")
        _group(s, "g-protected", "城关镇领导班子群", protected=True, category="领导班子群", idle=1)
        _group(s, "g-temp", "秋收临时群", temporary=True, expires_at=date(2026, 11, 1), idle=1)
        for i, p in enumerate(PLATFORMS):
            _group(s, f"pf-{p}", f"平台群{i}", platform=p, idle=1)
        # findings of every kind and suggested action, open and resolved
        for i, kind in enumerate(KINDS):
            for j, status in enumerate(("open", "resolved")):
                s.add(FindingRecord(key=f"f{i}{j}", kind=kind, group_ids=["z-active", "g-temp"], person_ids=["a"],
                                    score=0.5, action=FINDING_ACTIONS[i % len(FINDING_ACTIONS)],
                                    reasons=["已45天没有工作消息"], status=status, first_seen=IN_WEEK,
                                    last_seen=IN_WEEK))
        # audit records of every action, by every kind of operator and by persons
        actors = list(OPERATORS) + ["a", "adm"]
        for i, action in enumerate(AUDIT_ACTIONS):
            audit.record(s, actor=actors[i % len(actors)], action=action, at=IN_WEEK, group_id="z-active",
                         reason="测试记录")
        # a role change recorded by an earlier version, with the codes in its reason
        audit.record(s, actor="cli", action="role_change", at=IN_WEEK, reason="cadre → unit_admin",
                     data={"person_id": "ua", "old": "cadre", "new": "unit_admin", "unit": "城关镇"})
        # notices and outbox rows of every kind and status, for every role
        for i, kind in enumerate(MESSAGE_KINDS):
            for pid in ("a", "ua", "adm", "d"):
                status = OUTBOX_STATUSES[i % len(OUTBOX_STATUSES)]
                s.add(OutboxMessage(created_at=IN_WEEK, channel="user", recipient=pid, kind=kind,
                                    payload={"text": "请及时处理"}, status=status, attempts=0,
                                    next_attempt_at=IN_WEEK))
                s.add(Notice(person_id=pid, kind=kind, group_id="z-active", text="请及时处理", due_at=IN_WEEK,
                             created_at=IN_WEEK, status=("pending", "held", "sent", "merged")[i % 4]))
        for i, v in enumerate([3, 3, 1, 2, 2, 3]):
            s.add(PulseResponse(period="2026-W47", unit="城关镇", value=v, voter_key=f"v{i}", day=date(2026, 11, 16)))
        s.add(UselessVote(group_id="z-active", voter_key="uv", day=date(2026, 11, 18)))
        s.add(FormalismReport(day=date(2026, 11, 18), text="要求每天上传入户照片"))


class _Visible(html.parser.HTMLParser):
    """The text of a page a person sees: data outside script/style, and the placeholder, title,
    alt and value of buttons."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        a = dict(attrs)
        for k in ("placeholder", "title", "alt", "aria-label"):
            if a.get(k):
                self.parts.append(a[k])
        if tag == "input" and a.get("type") in ("submit", "button") and a.get("value"):
            self.parts.append(a["value"])

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible(page: str) -> str:
    p = _Visible()
    p.feed(page)
    return "\n".join(p.parts)


URL = re.compile(r"https?://[^\s)\]）]+")
FILE = re.compile(r"[\w.\-]+\.(?:xlsx|json|jsonl|csv|db)\b")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*")
WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:[:.\-][A-Za-z0-9_]+)*")


def latin_words(text: str, allowed: set[str]) -> set[str]:
    text = OPTION.sub(" ", FILE.sub(" ", URL.sub(" ", text)))
    return {w for w in WORD.findall(text) if w not in allowed and w not in PROPER_NAMES}


def _allowed(db) -> set[str]:
    """Group and person ids, and audit hash prefixes (the audit page shows them)."""
    with db.session() as s:
        ids = set(s.execute(select(Group.id)).scalars()) | set(s.execute(select(Person.id)).scalars())
        for h in s.execute(select(AuditRecord.hash)).scalars():
            ids.update({h[:12], h[:16]})
    out = set()
    for i in ids:  # a hash prefix or id may split into several tokens around "-"
        out.add(i)
        out.update(WORD.findall(i))
    return out


def _displayed_json(path: str, body: str) -> str:
    """The fields of a JSON endpoint that its page shows to a person."""
    d = json.loads(body)
    if path.startswith("/dashboard/api/charts.json"):
        return "\n".join([*d["days"], *(f["name"] for f in d["findings"]), *d["pulse_period_names"], *d["pulse"]])
    if path.startswith("/local/inbox"):
        return "\n".join(f"{m['kind_name']} {m['status_name']} {m['text']}" for m in d["messages"])
    if path.startswith("/local/persons"):
        return "\n".join([*(f"{p['name']} {p['unit']} {p['role_name']}" for p in d["persons"]),
                          *(g["name"] for g in d["groups"])])
    raise AssertionError(path)


@pytest.fixture
def county(db, runtime, clock):
    clock.set(NOW)
    build_county(db)
    with db.session() as s:
        assert set(s.execute(select(Group.status)).scalars()) == set(STATUSES) == set(labels.GROUP_STATUSES)
        assert set(s.execute(select(Person.role)).scalars()) == set(ROLES) == set(labels.ROLES)
    assert set(KINDS) == set(labels.FINDING_KINDS)
    return runtime


def test_every_code_written_by_the_code_has_a_label():
    """Audit actions, notice and outbox kinds written anywhere in the code are in governance.labels
    (so the county above, built from the label tables, has a row of each)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    actions, kinds = set(), set()
    for folder in ("bot", "handlers", "storage", "scheduler"):
        for path in (root / folder).rglob("*.py"):
            src = path.read_text(encoding="utf-8")
            for m in re.finditer(r"audit\.record\(", src):
                found = re.search(r'action="(\w+)"(?: if [^"]+ else "(\w+)")?', src[m.end():m.end() + 300])
                if found:
                    actions.update(x for x in found.groups() if x)
            for m in re.finditer(r"\b(?:notify|enqueue|_notify_commission)\(", src):
                kinds.update(re.findall(r'\bkind="(\w+)"', src[m.end():m.end() + 300])[:1])
            kinds.update(re.findall(r'OutboxMessage\([^)]*?kind="(\w+)"', src, re.S))
    assert {"role_change", "dissolve_intent", "lookback", "unprotect"} <= actions  # the scan works
    assert {"warning", "dissolve_order", "pulse", "reply", "digest"} <= kinds
    assert actions <= set(labels.ACTIONS), actions - set(labels.ACTIONS)
    assert kinds <= set(labels.MESSAGE_KINDS), kinds - set(labels.MESSAGE_KINDS)


def _check(surfaces: dict[str, str], allowed: set[str]) -> None:
    bad = {}
    for name, text in surfaces.items():
        if "json" in name and not name.startswith(("/dashboard/api/", "/local/")):
            continue  # machine output (see the module docstring)
        if name.startswith(("/dashboard/api/", "/local/")):
            text = _displayed_json(name, text)
        elif name.startswith("/dashboard") and "/dashboard/download/" not in name:
            text = visible(text)
        words = latin_words(text, allowed)
        if words:
            bad[name] = sorted(words)
    assert not bad, bad


def test_dashboard_pages_and_downloads_are_chinese(county):
    pages = web_surfaces(county)
    _check(pages, _allowed(county.db))
    assert "**" not in visible(pages["/dashboard"]) and "工作群治理周报" in visible(pages["/dashboard"])


def test_cli_tables_and_reports_are_chinese(county, monkeypatch, tmp_path):
    run = cli_runner(county, monkeypatch)
    assert "纪委监委" in run("roles", "set", "b", "commission")  # its audit record is checked below
    out = cli_surfaces(county, monkeypatch, tmp_path, as_of="2026-11-23")
    assert "防汛抗旱群" in out["sweep"] and "秋粮收购专班" in out["sweep"]
    assert "…" not in out["scan"] + out["sweep"] + out["sweep --apply"]  # long reasons wrap, never cut
    _check(out, _allowed(county.db))
    _check(web_surfaces(county), _allowed(county.db))  # after the sweep: its own audit records


def test_digest_and_local_inbox_are_chinese(county):
    surfaces = {"digest": digest_text(county), **local_surfaces(county, ["a", "ua", "adm", "d"])}
    _check(surfaces, _allowed(county.db))


def test_text_report_has_no_markdown_for_the_terminal(county, monkeypatch, tmp_path):
    out = cli_surfaces(county, monkeypatch, tmp_path, as_of="2026-11-23", apply=False)
    text = out["report week text"]
    assert "**" not in text and "](" not in text
    assert "工作群治理周报" in text and "http" in text  # the links are still there, readable


@pytest.mark.parametrize("columns", [80, 60])
def test_groups_table_fits_a_narrow_terminal_without_cutting_names(county, monkeypatch, columns):
    from rich.cells import cell_len

    with county.db.session() as s:
        s.add(Group(id="long-name", platform="wecom", name="城关镇二〇二六年秋冬季森林防火暨安全生产隐患排查整治专项工作群",
                    unit="城关镇人民政府党政综合办公室", owner_id="a", created_at=NOW, first_seen_at=NOW,
                    status="warned", member_count=1, message_count=0, ritual_count=0, keep_count=0))
        names = list(s.execute(select(Group.name)).scalars())
    out = cli_runner(county, monkeypatch, columns=columns)("groups")
    lines = out.splitlines()
    assert max(cell_len(line) for line in lines) <= columns, out
    assert "…" not in out
    # the first column read top to bottom holds every name whole (on one line, or wrapped)
    head = next(i for i, line in enumerate(lines) if "群名称" in line)
    width = cell_len(lines[head][:lines[head].index("单位")])
    column = "".join(_cells(line, width).strip() for line in lines[head + 1:])
    for name in names:
        assert name in column, (name, out)
    assert any(name in out for name in names)  # short names stay on one line
    assert "2026-09-24" in out  # the last column is there, not cropped
    if columns >= 80:
        assert "2026-11-01到期" in out


def _cells(line: str, width: int) -> str:
    """The first ``width`` terminal cells of ``line``."""
    from rich.cells import cell_len

    out, used = "", 0
    for ch in line:
        used += cell_len(ch)
        if used > width:
            break
        out += ch
    return out


def test_groups_table_shows_every_column_on_a_wide_terminal(county, monkeypatch):
    out = cli_runner(county, monkeypatch, columns=160)("groups")
    for head in ("群编号", "群名称", "群主", "单位", "类别", "受保护", "状态", "到期", "成员", "最近工作消息"):
        assert head in out
    assert "张镇长" in out and "已提醒待解散" in out


def test_dashboard_dates_are_local_dates(county):
    """11月17日 20:00 UTC is 11月18日 in Beijing: the pages show the local date."""
    from datetime import datetime, timezone

    evening = datetime(2026, 11, 17, 20, 0, tzinfo=timezone.utc)
    with county.db.session() as s:
        g = s.get(Group, "z-active")
        g.last_work_at = evening
        s.add(FindingRecord(key="late", kind="zombie", group_ids=["z-active"], person_ids=[], score=1.0,
                            action="warn", reasons=["夜间发现"], status="open", first_seen=evening, last_seen=evening))
        audit.record(s, actor="a", action="keep", at=evening, group_id="z-active", reason="夜间保留")
    pages = web_surfaces(county)
    findings = visible(pages["/dashboard/findings"])
    row = next(line for line in findings.split("夜间发现")[1].splitlines() if line.strip())
    assert row.strip() == "2026-11-18"
    groups = visible(pages["/dashboard/groups?status=active"])
    assert "2026-11-18" in groups.split("防汛抗旱群")[1].split("平台群")[0]
    assert "2026-11-18 04:00" in visible(pages["/dashboard/audit"])
