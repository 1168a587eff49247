"""``qunzhi backup`` / ``qunzhi restore``: one encrypted archive of the database.

SQLite: an online copy (``VACUUM INTO``), then the excluded tables emptied and the copy vacuumed
again, so no freed page still holds what they held. PostgreSQL: ``pg_dump --format=custom`` with
the excluded tables' data left out, restored with ``pg_restore``; both tools must have the
server's major version. ``storage.models.BACKUP_EXCLUDED_TABLES`` (the anonymous windows' salts)
never enter an archive: a restored salt would let the pseudonym key attribute votes again.

The archive: ``MAGIC``, a plaintext manifest (no personal data: format, dialect, schema revision,
time, counts), then the payload in AES-256-GCM chunks under a key derived with scrypt from the
operator's ``QUNZHI_BACKUP_KEY``. Every chunk authenticates the manifest, its index and whether it
is the last, so a reordered, truncated or edited archive is refused, as is a wrong key.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import make_url

from storage.audit import verify
from storage.db import Database
from storage.models import BACKUP_EXCLUDED_TABLES, AuditRecord, Base

MAGIC = b"QZBACKUP1\n"
CHUNK = 1 << 20
MIN_KEY_CHARS = 16
_LEN = struct.Struct("!I")
_SCRYPT = {"n": 2 ** 15, "r": 8, "p": 1}


class BackupError(Exception):
    """Why a backup or restore cannot be done, in Chinese (the CLI prints it)."""


@dataclass(frozen=True)
class RestoreResult:
    dialect: str
    revision: str | None
    created_at: str
    audit_ok: bool
    audit_checked: int
    audit_problem: str | None


# --- encryption ----------------------------------------------------------------------------------

def _key(secret: str, salt: bytes) -> bytes:
    if len(secret.strip()) < MIN_KEY_CHARS:
        raise BackupError(f"备份密钥 QUNZHI_BACKUP_KEY 未设置或太短（至少 {MIN_KEY_CHARS} 个字符）。"
                          "备份里有人员信息，必须加密；请设置一个随机长密钥并另行妥善保管。")
    return Scrypt(salt=salt, length=32, **_SCRYPT).derive(secret.encode())


def _aad(manifest: bytes, index: int, last: bool) -> bytes:
    return manifest + struct.pack("!QB", index, 1 if last else 0)


def _encrypt(src: Path, out: Path, manifest: dict, secret: str) -> None:
    salt, prefix = os.urandom(16), os.urandom(4)
    manifest = {**manifest, "kdf": {"name": "scrypt", "salt": base64.b64encode(salt).decode(), **_SCRYPT},
                "cipher": "AES-256-GCM", "nonce_prefix": base64.b64encode(prefix).decode(), "chunk": CHUNK}
    aead = AESGCM(_key(secret, salt))
    head = json.dumps(manifest, ensure_ascii=False, sort_keys=True).encode()
    tmp = out.with_name(out.name + ".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # personal data, even encrypted
    with open(src, "rb") as f, os.fdopen(fd, "wb") as w:
        w.write(MAGIC + _LEN.pack(len(head)) + head)
        index, block = 0, f.read(CHUNK)
        while True:
            nxt = f.read(CHUNK) if block else b""
            last = not nxt
            sealed = aead.encrypt(prefix + struct.pack("!Q", index), block, _aad(head, index, last))
            w.write(_LEN.pack(len(sealed)) + sealed)
            if last:
                break
            index, block = index + 1, nxt
        w.flush()
        os.fsync(w.fileno())
    os.replace(tmp, out)


def read_manifest(path: Path) -> dict:
    with open(path, "rb") as f:
        return _manifest(f)[0]


def _manifest(f) -> tuple[dict, bytes]:
    if f.read(len(MAGIC)) != MAGIC:
        raise BackupError("这不是群治的备份文件（文件头不符）。")
    raw = f.read(_LEN.size)
    if len(raw) < _LEN.size:
        raise BackupError("备份文件不完整。")
    (n,) = _LEN.unpack(raw)
    head = f.read(n)
    try:
        return json.loads(head), head
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BackupError("备份文件的说明部分已损坏。") from None


def _decrypt(path: Path, out: Path, secret: str) -> dict:
    with open(path, "rb") as f, open(out, "wb") as w:
        manifest, head = _manifest(f)
        try:
            kdf = manifest["kdf"]
            aead = AESGCM(_key(secret, base64.b64decode(kdf["salt"])))
            prefix = base64.b64decode(manifest["nonce_prefix"])
        except (KeyError, TypeError, ValueError):
            raise BackupError("备份文件的说明部分已损坏。") from None
        index = 0
        while True:
            raw = f.read(_LEN.size)
            if len(raw) < _LEN.size:
                raise BackupError("备份文件不完整（在结尾之前就结束了），没有恢复任何内容。")
            (n,) = _LEN.unpack(raw)
            sealed = f.read(n)
            nonce = prefix + struct.pack("!Q", index)
            for last in (False, True):
                try:
                    w.write(aead.decrypt(nonce, sealed, _aad(head, index, last)))
                    break
                except InvalidTag:
                    continue
            else:
                raise BackupError("无法解密：备份密钥不对，或文件已被改动或损坏。没有恢复任何内容。")
            if last:
                if f.read(1):
                    raise BackupError("备份文件结尾之后还有多余内容，可能被改动。没有恢复任何内容。")
                return manifest
            index += 1


# --- the database side ---------------------------------------------------------------------------

def _revision(db: Database) -> str | None:
    with db.engine.connect() as c:
        if not inspect(c).has_table("alembic_version"):
            return None
        return c.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _has_data(db: Database) -> bool:
    names = set(inspect(db.engine).get_table_names())
    with db.engine.connect() as c:
        for t in Base.metadata.sorted_tables:
            if t.name in names and c.execute(select(t).limit(1)).first() is not None:
                return True
    return False


def _sqlite_path(db: Database) -> Path:
    path = make_url(db.url).database
    if not path or path == ":memory:":
        raise BackupError("内存数据库无法备份或恢复。")
    return Path(path)


def _pg_target(db: Database, tmp: Path) -> tuple[str, str | None]:
    """(libpq URL for the tools, schema from the URL's search_path). The password, if any, goes in
    a private passfile under ``tmp`` (never on a command line that ``ps`` shows)."""
    url = make_url(db.url)
    options = url.query.get("options") or ""
    if isinstance(options, tuple):
        options = " ".join(options)
    m = re.search(r"search_path\s*=\s*([A-Za-z0-9_]+)", options)
    query = {}
    if url.password:
        passfile = tmp / "pgpass"
        esc = [str(x or "*").replace("\\", "\\\\").replace(":", "\\:")
               for x in (url.host, url.port, url.database, url.username, url.password)]
        passfile.write_text(":".join(esc) + "\n", encoding="utf-8")
        passfile.chmod(0o600)
        query["passfile"] = str(passfile)
    clean = url.set(drivername="postgresql", password=None, query=query)
    return clean.render_as_string(hide_password=False), m.group(1) if m else None


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise BackupError(f"找不到 {name}：PostgreSQL 的备份和恢复需要安装与服务器同版本的 PostgreSQL 客户端工具。")
    return path


def _major(version: str) -> int | None:
    """15 from "pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"."""
    m = re.search(r"\(PostgreSQL\)\s+(\d+)", version) or re.search(r"(\d+)", version)
    return int(m.group(1)) if m else None


def check_pg_tools(db: Database, *names: str) -> None:
    """pg_dump/pg_restore must have the server's major version (an older one cannot read a newer
    server, and a dump read by another major version may not restore as it was)."""
    with db.engine.connect() as c:
        server = int(c.execute(text("SHOW server_version_num")).scalar()) // 10000
    for name in names:
        out = subprocess.run([_tool(name), "--version"], capture_output=True, text=True, timeout=30).stdout
        tool = _major(out)
        if tool != server:
            raise BackupError(f"{name} 的版本（{tool}）与数据库服务器的版本（{server}）不一致，"
                              f"请安装 PostgreSQL {server} 的客户端工具后再试。")


def _run(args: list[str], what: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise BackupError(f"{what}失败：{done.stderr.strip()[-800:] or done.returncode}")


def _audit_count(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(AuditRecord)) or 0


def backup(db: Database, out: Path, secret: str, *, now: datetime | None = None) -> dict:
    """Write the encrypted archive to ``out``; returns its manifest."""
    _key(secret, b"0" * 16)  # refuse a missing or short key before any work
    now = now or datetime.now(timezone.utc)
    manifest = {"format": 1, "product": "qunzhi", "dialect": db.dialect, "revision": _revision(db),
                "created_at": now.isoformat(), "audit_records": _audit_count(db),
                "excluded_tables": list(BACKUP_EXCLUDED_TABLES)}
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="qunzhi-backup-", dir=out.parent) as tmp:
        plain = Path(tmp) / "payload"
        if db.dialect == "sqlite":
            src = sqlite3.connect(_sqlite_path(db))
            try:
                src.execute("VACUUM INTO ?", (str(plain),))
            finally:
                src.close()
            copy = sqlite3.connect(plain)
            try:
                for name in BACKUP_EXCLUDED_TABLES:
                    copy.execute(f'DELETE FROM "{name}"')
                copy.commit()
                copy.execute("VACUUM")  # no freed page keeps a deleted salt
            finally:
                copy.close()
        elif db.dialect == "postgresql":
            check_pg_tools(db, "pg_dump")
            url, schema = _pg_target(db, Path(tmp))
            args = [_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--file={plain}"]
            if schema:
                args.append(f"--schema={schema}")
            args += [f"--exclude-table-data={schema + '.' if schema else ''}{n}" for n in BACKUP_EXCLUDED_TABLES]
            _run(args + [url], "pg_dump 备份")
            manifest["schema"] = schema
        else:
            raise BackupError(f"不支持备份这种数据库：{db.dialect}")
        _encrypt(plain, out, manifest, secret)
    return read_manifest(out)


def restore(db: Database, archive: Path, secret: str, *, force: bool = False) -> RestoreResult:
    """Restore ``archive`` into ``db``: refused into a database holding data unless ``force``;
    afterwards migrated to the current schema and the audit chain verified."""
    archive = Path(archive)
    manifest = read_manifest(archive)
    if manifest.get("dialect") != db.dialect:
        raise BackupError(f"这份备份来自 {manifest.get('dialect')} 数据库，不能恢复到 {db.dialect} 数据库。")
    if not force and _has_data(db):
        raise BackupError("目标数据库里已经有数据。恢复会覆盖它们；确认要覆盖请加 --force（建议先另做一份备份）。")
    with tempfile.TemporaryDirectory(prefix="qunzhi-restore-") as tmp:
        plain = Path(tmp) / "payload"
        _decrypt(archive, plain, secret)  # everything is checked before the database is touched
        if db.dialect == "sqlite":
            target = _sqlite_path(db)
            check = sqlite3.connect(plain)
            try:
                ok = check.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                check.close()
            if ok != "ok":
                raise BackupError("备份里的数据库文件校验不通过，没有恢复。")
            db.dispose()
            if target.exists():  # fold a write-ahead log in before the file is replaced
                con = sqlite3.connect(target)
                try:
                    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    con.close()
            staged = target.with_name(target.name + ".restoring")
            shutil.copyfile(plain, staged)
            os.replace(staged, target)
            for suffix in ("-wal", "-shm"):
                Path(str(target) + suffix).unlink(missing_ok=True)
        else:
            check_pg_tools(db, "pg_restore")
            url, _ = _pg_target(db, Path(tmp))
            db.dispose()
            _run([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges",
                  "--single-transaction", f"--dbname={url}", str(plain)], "pg_restore 恢复")
    fresh = Database(db.url)  # migrates an older archive up to the current schema
    try:
        with fresh.session() as s:
            result = verify(s)
    finally:
        fresh.dispose()
    return RestoreResult(db.dialect, manifest.get("revision"), manifest.get("created_at", ""),
                         result.ok, result.checked, result.problem)
