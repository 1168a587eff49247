"""qunzhi backup / restore: an encrypted round trip on SQLite and PostgreSQL, the audit chain
verified after it, and nothing the anonymity guarantee destroys in the archive."""
import sqlite3
import stat
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from storage import audit
from storage.backup import MAGIC, BackupError, _decrypt, backup, read_manifest, restore
from storage.models import AnonSalt, AuditRecord, Group
from tests.storage.test_import import cli  # noqa: F401  (fixture)

NOW = datetime(2026, 11, 23, 2, tzinfo=timezone.utc)
KEY = "county-backup-key-3f9a7c1e"
SALT = "deadbeefcafef00d" * 4


def _seed(db):
    with db.session() as s:
        for i in range(3):
            s.add(Group(id=f"g{i}", platform="wecom", name=f"防汛群{i}", created_at=NOW, first_seen_at=NOW,
                        source="chat", status="active", member_count=0))
            audit.record(s, actor="admin", action="register", at=NOW + timedelta(minutes=i), group_id=f"g{i}",
                         reason="报备")
        s.add(AnonSalt(purpose="pulse", scope="", period="2026-W48", salt=SALT, closes_at=NOW + timedelta(days=7)))


def _wipe(db):
    from tests.conftest import _truncate
    _truncate(db)


def _counts(db):
    with db.session() as s:
        return (s.scalar(select(func.count()).select_from(Group)), s.scalar(select(func.count()).select_from(AuditRecord)),
                s.scalar(select(func.count()).select_from(AnonSalt)))


def test_round_trip_restores_everything_but_the_salts(db, tmp_path):
    _seed(db)
    out = tmp_path / "b.qzbak"
    m = backup(db, out, KEY, now=NOW)
    assert m["dialect"] == db.dialect and m["audit_records"] == 3 and m["excluded_tables"] == ["anon_salts"]
    raw = out.read_bytes()
    assert raw.startswith(MAGIC) and "防汛群".encode() not in raw and SALT.encode() not in raw  # encrypted
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    _wipe(db)
    assert _counts(db) == (0, 0, 0)
    res = restore(db, out, KEY)
    assert res.audit_ok and res.audit_checked == 3
    assert _counts(db) == (3, 3, 0)
    with db.session() as s:
        assert audit.verify(s).ok


def test_the_sqlite_payload_keeps_no_freed_page_with_a_salt(tmp_path):
    from storage.db import Database
    db = Database(f"sqlite:///{tmp_path / 'q.db'}")
    _seed(db)
    out = tmp_path / "b.qzbak"
    backup(db, out, KEY, now=NOW)
    plain = tmp_path / "plain.db"
    _decrypt(out, plain, KEY)
    assert SALT.encode() not in plain.read_bytes()
    con = sqlite3.connect(plain)
    assert con.execute("SELECT count(*) FROM groups").fetchone()[0] == 3
    con.close()
    db.dispose()


def test_a_wrong_key_or_an_edited_archive_changes_nothing(db, tmp_path):
    _seed(db)
    out = tmp_path / "b.qzbak"
    backup(db, out, KEY, now=NOW)
    with pytest.raises(BackupError, match="密钥不对"):
        restore(db, out, "another-key-of-enough-length", force=True)
    edited = tmp_path / "edited.qzbak"
    data = bytearray(out.read_bytes())
    data[-5] ^= 1
    edited.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="改动或损坏"):
        restore(db, edited, KEY, force=True)
    cut = tmp_path / "cut.qzbak"
    cut.write_bytes(out.read_bytes()[:-40])
    with pytest.raises(BackupError):
        restore(db, cut, KEY, force=True)
    assert _counts(db) == (3, 3, 1)  # untouched


def test_restore_refuses_a_database_with_data_unless_forced(db, tmp_path):
    _seed(db)
    out = tmp_path / "b.qzbak"
    backup(db, out, KEY, now=NOW)
    with pytest.raises(BackupError, match="--force"):
        restore(db, out, KEY)
    res = restore(db, out, KEY, force=True)
    assert res.audit_ok and _counts(db) == (3, 3, 0)


def test_no_backup_without_a_real_key(db, tmp_path):
    with pytest.raises(BackupError, match="QUNZHI_BACKUP_KEY"):
        backup(db, tmp_path / "b.qzbak", "short", now=NOW)
    assert not (tmp_path / "b.qzbak").exists()


def test_pg_tools_of_another_major_version_are_refused(db, tmp_path, monkeypatch):
    if db.dialect != "postgresql":
        pytest.skip("pg_dump is PostgreSQL's")
    fake = tmp_path / "bin"
    fake.mkdir()
    tool = fake / "pg_dump"
    tool.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    with pytest.raises(BackupError, match="版本"):
        backup(db, tmp_path / "b.qzbak", KEY, now=NOW)


def test_the_cli_round_trip(cli, db, tmp_path, monkeypatch):  # noqa: F811
    from config.settings import get_settings
    _seed(db)
    out = tmp_path / "b.qzbak"
    r = cli("backup", str(out))
    assert r.exit_code == 1 and "QUNZHI_BACKUP_KEY" in r.output
    monkeypatch.setenv("QUNZHI_BACKUP_KEY", KEY)
    get_settings.cache_clear()
    r = cli("backup", str(out))
    assert r.exit_code == 0 and "已备份" in r.output, r.output
    assert read_manifest(out)["audit_records"] == 3
    r = cli("backup", str(out))
    assert r.exit_code == 2 and "不会覆盖" in r.output
    r = cli("restore", str(out))
    assert r.exit_code == 1 and "--force" in r.output
    r = cli("restore", str(out), "--force")
    assert r.exit_code == 0 and "审计链完整：共校验 3 条" in r.output, r.output
