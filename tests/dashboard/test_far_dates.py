"""Rows already stored with absurd dates (9999-12-31T23:59:59Z, 0001-01-01: a bridge event's
``at`` before the input was checked) must not break any page, export, CLI table or the digest.
The audit chain is append-only, so such a row can never be removed."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from storage import audit
from storage.models import (FindingRecord, FormalismReport, Group, Membership, Message, Notice, OutboxMessage, Person,
                            PulseResponse, StatSnapshot, UselessVote)
from tests.dashboard.conftest import NOW
from tests.dashboard.surfaces import cli_surfaces, digest_text, local_surfaces, web_surfaces

FAR = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
EARLY = datetime(1, 1, 1, tzinfo=timezone.utc)
FAR_DAY, EARLY_DAY = date(9999, 12, 31), date(1, 1, 1)


def _store_absurd_rows(db) -> None:
    with db.session() as s:
        s.add(Person(id="far", name="远方", unit="城关镇", role="cadre", created_at=FAR))
        s.add(Person(id="early", name="古人", unit="容美镇", role="commission", created_at=EARLY))
        s.flush()
        for gid, when, day, status in [("gfar", FAR, FAR_DAY, "active"), ("gearly", EARLY, EARLY_DAY, "active"),
                                       ("gfar-w", FAR, FAR_DAY, "warned"), ("gearly-w", EARLY, EARLY_DAY, "warned"),
                                       ("gfar-d", FAR, FAR_DAY, "dissolved"), ("gearly-d", EARLY, EARLY_DAY, "dissolved"),
                                       ("gfar-o", FAR, FAR_DAY, "dissolving"), ("gearly-o", EARLY, EARLY_DAY,
                                                                                 "dissolving")]:
            s.add(Group(id=gid, platform="bridge", name=f"时间异常群{gid}", unit="城关镇", owner_id="far",
                        temporary=True, created_at=when, first_seen_at=when, registered_at=when, expires_at=day,
                        status=status, status_changed_at=when, done_at=when if gid.startswith("gfar") else None,
                        warned_at=when if status == "warned" else None,
                        warning_sent_at=when if status == "warned" else None,
                        dissolved_at=when if status == "dissolved" else None,
                        dissolve_method="order" if status == "dissolving" else None,
                        order_deadline=when if status == "dissolving" else None,
                        dissolve_state={"method": "order", "members": ["far"]} if status == "dissolving" else None,
                        kept_until=when, keep_count=0, member_count=2, message_count=3, ritual_count=1,
                        last_message_at=when, last_work_at=when, updated_at=when))
            s.flush()
            for pid in ("far", "early"):
                s.add(Membership(group_id=gid, person_id=pid, joined_at=when))
            s.add(Message(dedupe_key=f"m:{gid}", platform="bridge", group_id=gid, sender_id="far", sent_at=when))
            s.add(FindingRecord(key=f"far:{gid}", kind="zombie", group_ids=[gid], person_ids=["far"], score=1.0,
                                action="warn", reasons=["时间异常"], status="open", first_seen=when, last_seen=when))
            s.add(UselessVote(group_id=gid, voter_key=f"v-{gid}", day=day))
        for when in (FAR, EARLY):
            audit.record(s, actor="far", action="register", at=when, group_id="gfar", reason="时间异常")
            s.add(OutboxMessage(created_at=when, channel="user", recipient="far", kind="warning",
                                payload={"text": "时间异常"}, status="pending", attempts=0, not_before=when,
                                next_attempt_at=when))
            s.add(Notice(person_id="far", kind="warning", group_id="gfar", text="时间异常", due_at=when,
                         created_at=when, status="pending"))
        for i, day in enumerate((FAR_DAY, EARLY_DAY)):
            s.add(PulseResponse(period=f"{day.year}-W01", unit="城关镇", value=3, voter_key=f"far{i}", day=day))
            s.add(FormalismReport(day=day, text="时间异常"))
            s.add(StatSnapshot(day=day, data={"groups_live": 1}))


@pytest.fixture
def absurd(known, runtime, clock):
    clock.set(NOW)
    _store_absurd_rows(known)
    return runtime


def test_every_page_and_download_survives_absurd_dates(absurd):
    pages = web_surfaces(absurd)
    assert "时间异常群gfar" in pages["/dashboard/groups"]
    assert "9999-12-31" in pages["/dashboard/audit"] and "0001-01-01" in pages["/dashboard/audit"]


def test_every_cli_table_and_report_survives_absurd_dates(absurd, monkeypatch, tmp_path):
    out = cli_surfaces(absurd, monkeypatch, tmp_path, as_of="2026-11-23")
    assert "工作群台账（13）" in out["groups"]
    assert "时间异常群gfar" in out["report week xlsx"]


def test_digest_and_local_inbox_survive_absurd_dates(absurd):
    assert "工作群治理" in digest_text(absurd)
    inbox = local_surfaces(absurd, ["far", "early"])
    assert "时间异常" in inbox["/local/inbox?person_id=far"]


def test_sweep_apply_survives_absurd_dates(absurd, monkeypatch, tmp_path):
    out = cli_surfaces(absurd, monkeypatch, tmp_path, as_of="2026-11-23", apply=True)
    assert "执行" in out["sweep --apply"]
    again = cli_surfaces(absurd, monkeypatch, tmp_path, as_of="2026-11-24", apply=True)
    assert "执行" in again["sweep --apply"]
