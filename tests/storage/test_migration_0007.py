"""Migration 0007 (ledger notes, unresolved names, roster fields) matches the models, up and down."""
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from storage.db import alembic_config
from storage.models import Base


def test_migrated_schema_matches_the_models(db):
    with db.engine.connect() as conn:
        # Only the project's own tables: APScheduler keeps its job table in the same database.
        ctx = MigrationContext.configure(conn, opts={"include_name": lambda name, type_, parent: (
            type_ != "table" or name in Base.metadata.tables)})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []
    cols = {c["name"] for c in inspect(db.engine).get_columns("groups")}
    assert {"note", "ledger_names"} <= cols


def test_0007_downgrades_and_upgrades(sqlite_db):
    cfg = alembic_config(sqlite_db.url)
    with sqlite_db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    assert "title" not in {c["name"] for c in inspect(sqlite_db.engine).get_columns("persons")}
    with sqlite_db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert "title" in {c["name"] for c in inspect(sqlite_db.engine).get_columns("persons")}
