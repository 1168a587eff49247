"""Migration 0011 (ledger links and rejections) goes down and up again."""
from alembic import command
from sqlalchemy import inspect

from storage.db import alembic_config


def test_0011_downgrades_and_upgrades(sqlite_db):
    cfg = alembic_config(sqlite_db.url)
    with sqlite_db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0009")
    tables = set(inspect(sqlite_db.engine).get_table_names())
    assert "ledger_links" not in tables and "ledger_rejections" not in tables
    with sqlite_db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    insp = inspect(sqlite_db.engine)
    assert {"ledger_links", "ledger_rejections"} <= set(insp.get_table_names())
    assert any(ix["unique"] and ix["column_names"] == ["group_id"] for ix in insp.get_indexes("ledger_links"))
