"""Every surface a user reads: dashboard pages and downloads, the CLI tables and reports, the
commission digest and the /local inbox. ``walk`` returns ``{surface: text}`` so a test can check
that each one answered and what it says."""
from __future__ import annotations

import io
from datetime import datetime

from fastapi.testclient import TestClient
from openpyxl import load_workbook
from typer.testing import CliRunner

from bot.app import create_app
from tests.dashboard.test_dashboard_auth import ORIGIN, login

KINDS = ("zombie", "duplicate", "overlap", "expired", "unregistered", "overloaded_member", "rebound", "useless")
STATUSES = ("active", "warned", "dissolving", "dissolved", "restoring", "purged", "merged")

PAGES = ["/dashboard", "/dashboard/api/charts.json", "/dashboard/findings", "/dashboard/findings?status=all",
         "/dashboard/findings?status=resolved", "/dashboard/groups", "/dashboard/units", "/dashboard/audit",
         "/dashboard/feedback", "/dashboard/downloads", "/dashboard/trends", "/dashboard/reconcile", "/dashboard/unit?name=城关镇",
         *[f"/dashboard/findings?status=all&kind={k}" for k in KINDS],
         *[f"/dashboard/groups?status={s}" for s in STATUSES]]
DOWNLOADS = [f"/dashboard/download/report.{fmt}?period={p}" for fmt in ("xlsx", "json") for p in ("week", "month")]


def xlsx_text(data) -> str:
    wb = load_workbook(data)
    lines = []
    for ws in wb.worksheets:
        lines.append(ws.title)
        for row in ws.iter_rows(values_only=True):
            lines.append("\t".join("" if v is None else str(v) for v in row))
    return "\n".join(lines)


def merge_pages(runtime) -> list[str]:
    """The merge page of a live group and of a protected one (the refusal), when there are such."""
    from sqlalchemy import select

    from storage.models import Group

    with runtime.db.session() as s:
        live = s.execute(select(Group.id).where(Group.status.in_(("active", "warned")), Group.protected.is_(False))
                         .order_by(Group.id).limit(1)).scalar()
        protected = s.execute(select(Group.id).where(Group.protected.is_(True)).order_by(Group.id).limit(1)).scalar()
    return [f"/dashboard/merge?group_id={gid}" for gid in (live, protected) if gid]


def web_surfaces(runtime) -> dict[str, str]:
    out: dict[str, str] = {}
    with TestClient(create_app(runtime=runtime, start_scheduler=False), base_url=ORIGIN,
                    raise_server_exceptions=False) as c:
        login(c)
        for path in [*PAGES, *merge_pages(runtime)]:
            r = c.get(path)
            assert r.status_code == 200, (path, r.status_code, r.text[:500])
            out[path] = r.text
        for path in DOWNLOADS:
            r = c.get(path)
            assert r.status_code == 200, (path, r.status_code, r.text[:500])
            out[path] = xlsx_text(io.BytesIO(r.content)) if ".xlsx" in path else r.text
    return out


def local_surfaces(runtime, person_ids) -> dict[str, str]:
    """The /local page's inbox (kind and status of every queued message) for these persons."""
    from bot.runtime import Runtime

    settings = runtime.settings.model_copy(update={"wecom_corp_id": "", "wecom_token": "", "wecom_aes_key": "",
                                                   "wecom_secret": "", "aibot_token": "", "aibot_aes_key": ""})
    assert settings.local_mode
    local = Runtime(settings, db=runtime.db, clock=runtime.now)
    out: dict[str, str] = {}
    with TestClient(create_app(runtime=local, start_scheduler=False, bind_host="127.0.0.1"), base_url=ORIGIN,
                    raise_server_exceptions=False) as c:
        for pid in person_ids:
            r = c.get("/local/inbox", params={"person_id": pid})
            assert r.status_code == 200, (pid, r.status_code, r.text[:500])
            out[f"/local/inbox?person_id={pid}"] = r.text
        r = c.get("/local/persons")
        assert r.status_code == 200, r.text[:500]
        out["/local/persons"] = r.text
    return out


def cli_runner(runtime, monkeypatch, *, columns: int | None = None):
    """``run(*args) -> output`` of the ``qunzhi`` command against this runtime's database."""
    from bot import cli as cli_module
    from bot.runtime import Runtime
    from config.settings import get_settings

    monkeypatch.setenv("QUNZHI_DATABASE_URL", runtime.db.url)
    for var in ("QUNZHI_WECOM_CORP_ID", "QUNZHI_WECOM_TOKEN", "QUNZHI_WECOM_AES_KEY", "QUNZHI_BRIDGE_SECRET",
                "QUNZHI_AIBOT_TOKEN", "QUNZHI_AIBOT_AES_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("QUNZHI_ENVIRONMENT", "development")
    monkeypatch.setenv("QUNZHI_ADMIN_TOKEN", "admin-token-for-tests")
    if columns:
        monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setattr(cli_module, "runtime", lambda: Runtime(get_settings(), db=runtime.db, clock=runtime.now))
    runner = CliRunner()

    def run(*args) -> str:
        get_settings.cache_clear()
        try:
            res = runner.invoke(cli_module.app, list(args), catch_exceptions=False)
        finally:
            get_settings.cache_clear()
        assert res.exit_code == 0, (args, res.output)
        return res.output

    return run


def cli_surfaces(runtime, monkeypatch, tmp_path, *, as_of: str, apply: bool = True,
                 columns: int | None = None) -> dict[str, str]:
    """``qunzhi groups``, ``scan`` (table and --json), ``sweep`` (dry run, then --apply),
    ``report`` text/json/xlsx, ``roles list``."""
    run = cli_runner(runtime, monkeypatch, columns=columns)
    out: dict[str, str] = {}
    out["groups"] = run("groups")
    out["roles list"] = run("roles", "list")
    out["scheduler --outbox"] = run("scheduler", "--outbox")
    out["scan"] = run("scan", "--as-of", as_of)
    out["scan --json"] = run("scan", "--as-of", as_of, "--json")
    out["sweep"] = run("sweep", "--as-of", as_of)
    for period in ("week", "month"):
        out[f"report {period} text"] = run("report", "--period", period, "--format", "text")
        out[f"report {period} json"] = run("report", "--period", period, "--format", "json")
        x = tmp_path / f"r-{period}.xlsx"
        run("report", "--period", period, "--format", "xlsx", "--out", str(x))
        out[f"report {period} xlsx"] = xlsx_text(x)
    if apply:
        out["sweep --apply"] = run("sweep", "--as-of", as_of, "--apply")
    return out


def digest_text(runtime) -> str:
    """The commission digest queued by the scheduler (storage.reports.enqueue_commission_digest)."""
    from sqlalchemy import select

    from storage.models import OutboxMessage
    from storage.reports import enqueue_commission_digest

    with runtime.db.session() as s:
        enqueue_commission_digest(s, runtime.now(), runtime.settings)
    with runtime.db.session() as s:
        rows = s.execute(select(OutboxMessage).where(OutboxMessage.kind == "digest")).scalars().all()
        return "\n".join(f"{r.payload.get('title', '')}\n{r.payload['text']}" for r in rows)


def as_of_day(now: datetime, tz) -> str:
    return now.astimezone(tz).date().isoformat()
