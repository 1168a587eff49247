"""SIGKILL ``qunzhi sweep --apply`` in the middle of a large ledger, run it again: the sweep
completes, no group is dissolved twice, none is left half-dissolved, the audit chain verifies.

Oracle: the same ledger swept once without a kill (reference). After kill + rerun(s) the groups'
states and the multiset of (group, audit action) records must equal the reference's.
QUNZHI_FAULT_GROUPS sets the ledger size (heavy run: 20,000)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from benchmarks.ingest import drop_pg_schema, pg_schema_url, qunzhi_cmd
from storage import audit
from storage.db import Database
from storage.models import AuditRecord, Group
from tests.conftest import PG_SKIP, PG_URL
from tests.lifecycle.helpers import NOW, group, seed_people

N = int(os.environ.get("QUNZHI_FAULT_GROUPS", "600"))
AS_OF = "2026-11-23"


def _seed(url: str) -> None:
    db = Database(url)
    with db.session() as s:
        seed_people(s)
        for i in range(N):
            g = group(s, f"g{i:06d}", f"专班群{i}", platform="ledger", source="ledger", idle_days=60,
                      members=("owner1", f"m{i}a", f"m{i}b", f"m{i}c"))
            g.status, g.warned_at, g.warning_sent_at = "warned", NOW - timedelta(days=9), NOW - timedelta(days=8)
    db.dispose()


def _state(url: str):
    db = Database(url, migrate=False)
    try:
        with db.session() as s:
            groups = {g.id: (g.status, g.dissolve_method, (g.dissolve_state or {}).get("done"))
                      for g in s.execute(select(Group)).scalars()}
            actions = Counter(s.execute(select(AuditRecord.group_id, AuditRecord.action)).all())
            verified = audit.verify(s)
        return groups, actions, verified
    finally:
        db.dispose()


def _audit_count(url: str) -> int:
    db = Database(url, migrate=False)
    try:
        with db.session() as s:
            return s.execute(select(func.count()).select_from(AuditRecord)).scalar_one()
    finally:
        db.dispose()


def _sweep(url: str, tmp_path, *, kill_at: int | None = None) -> int | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUNZHI_")}
    env.update(QUNZHI_DATABASE_URL=url, QUNZHI_ENVIRONMENT="development")
    proc = subprocess.Popen(qunzhi_cmd() + ["sweep", "--apply", "--as-of", AS_OF], env=env, cwd=str(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    if kill_at is None:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-2000:]
        return None
    while proc.poll() is None:
        if _audit_count(url) >= kill_at:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(30)
    return proc.returncode


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ref.db'}", f"sqlite:///{tmp_path / 'kill.db'}"
        return
    if not PG_URL:
        pytest.skip(PG_SKIP)
    a, b = f"qz_sweep_ref_{uuid.uuid4().hex[:6]}", f"qz_sweep_kill_{uuid.uuid4().hex[:6]}"
    yield pg_schema_url(PG_URL, a), pg_schema_url(PG_URL, b)
    drop_pg_schema(PG_URL, a)
    drop_pg_schema(PG_URL, b)


def test_sigkill_mid_sweep_then_rerun_completes_once(urls, tmp_path):
    ref_url, kill_url = urls
    _seed(ref_url)
    _seed(kill_url)
    _sweep(ref_url, tmp_path)
    ref_groups, ref_actions, ref_verified = _state(ref_url)
    assert ref_verified.ok if hasattr(ref_verified, "ok") else ref_verified
    base = _audit_count(kill_url)
    done_in_ref = sum(ref_actions.values()) - base
    assert done_in_ref >= N, "the reference sweep changed every group"

    rc = _sweep(kill_url, tmp_path, kill_at=base + done_in_ref // 3)
    assert rc == -signal.SIGKILL, "the kill landed before the sweep finished"
    mid_groups, _, mid_verified = _state(kill_url)
    assert mid_verified.ok if hasattr(mid_verified, "ok") else mid_verified
    assert mid_groups != ref_groups, "the kill left work to do"

    _sweep(kill_url, tmp_path)  # after the restart the sweep completes
    groups, actions, verified = _state(kill_url)
    assert verified.ok if hasattr(verified, "ok") else verified, "the audit chain verifies"
    assert groups == ref_groups, "every group ends as in an uninterrupted sweep (none half-dissolved)"
    assert actions == ref_actions, "no group dissolved (or audited) twice, none missing"
    _sweep(kill_url, tmp_path)  # a third run does nothing more
    assert _state(kill_url)[1] == ref_actions
