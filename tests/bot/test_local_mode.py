"""Local mode (/local): only in development, only when the server listens on a loopback address,
and never seeding demo people into a database that already has some."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from bot.app import create_app
from storage.models import Person
from tests.conftest import ADMIN_TOKEN, make_settings

ORIGIN = "http://127.0.0.1:8000"
NO_CREDENTIALS = dict(wecom_corp_id="", wecom_token="", wecom_aes_key="", wecom_secret="", aibot_token="",
                      aibot_aes_key="")
PRODUCTION = dict(environment="production", pseudonym_key="a-separate-pseudonym-key", ingest_writer="thread",
                  **NO_CREDENTIALS)


def _client(db, clock, bind_host, **overrides):
    from bot.runtime import Runtime

    settings = make_settings(database_url=db.url, **overrides)
    app = create_app(runtime=Runtime(settings, db=db, clock=clock), start_scheduler=False, bind_host=bind_host)
    return TestClient(app, base_url=ORIGIN)


def _persons(db) -> int:
    with db.session() as s:
        return s.query(Person).count()


def _all_local_paths(c) -> list[int]:
    return [c.get("/local").status_code, c.get("/local/persons").status_code,
            c.get("/local/inbox", params={"person_id": "admin"}).status_code,
            c.post("/local/send", json={"person_id": "admin", "text": "保护 防汛抗旱群"},
                   headers={"Origin": ORIGIN}).status_code,
            c.post("/local/send", json={"person_id": "admin", "text": "看板"}, headers={"Origin": ORIGIN}).status_code]


@pytest.mark.parametrize("bind_host", ["127.0.0.1", "0.0.0.0", None])
def test_bridge_only_production_has_no_local_mode(db, clock, bind_host):
    with _client(db, clock, bind_host, **PRODUCTION, bridge_secret="bridge-secret-for-tests") as c:
        assert _all_local_paths(c) == [404] * 5
        assert c.get("/healthz").json()["local_mode"] is False
    assert _persons(db) == 0  # nobody seeded, nobody to act as


@pytest.mark.parametrize("path", ["/local", "/local/", "/local/persons/", "/local/inbox", "/local/nothing",
                                  "/local/send"])
def test_every_local_path_is_404_outside_local_mode(db, clock, path):
    with _client(db, clock, "127.0.0.1", **PRODUCTION) as c:
        for method in ("GET", "POST"):
            r = c.request(method, path, follow_redirects=False)
            assert r.status_code == 404 and "没有这个页面" in r.text, (method, path, r.status_code)


@pytest.mark.parametrize("bind_host", ["0.0.0.0", "::", "192.168.1.10", None])
def test_development_not_bound_to_loopback_has_no_local_mode(db, clock, bind_host):
    with _client(db, clock, bind_host, **NO_CREDENTIALS) as c:
        assert _all_local_paths(c) == [404] * 5
        assert c.get("/healthz").json()["local_mode"] is False
    assert _persons(db) == 0


@pytest.mark.parametrize("bind_host", ["127.0.0.1", "::1", "localhost"])
def test_development_on_loopback_offers_the_local_page(db, clock, bind_host):
    with _client(db, clock, bind_host, **NO_CREDENTIALS) as c:
        assert c.get("/healthz").json()["local_mode"] is True
        assert c.get("/local").status_code == 200
        ids = {p["id"] for p in c.get("/local/persons").json()["persons"]}
        assert "admin" in ids and "zhang.zz" in ids
        r = c.post("/local/send", json={"person_id": "zhang.zz", "text": "帮助"}, headers={"Origin": ORIGIN})
        assert r.status_code == 200 and r.json()["replies"]


def test_credentials_turn_local_mode_off_even_on_loopback(db, clock):
    with _client(db, clock, "127.0.0.1") as c:  # make_settings configures WeCom and the AI bot
        assert c.get("/local").status_code == 404
        assert c.get("/healthz").json()["local_mode"] is False


def test_no_seeding_into_a_database_with_people(db, clock):
    with db.session() as s:
        s.add(Person(id="real.person", name="真实干部", role="cadre", created_at=datetime(2026, 1, 1, tzinfo=timezone.utc)))
    with _client(db, clock, "127.0.0.1", **NO_CREDENTIALS) as c:
        assert c.get("/local").status_code == 200
        assert [p["id"] for p in c.get("/local/persons").json()["persons"]] == ["real.person"]
        r = c.post("/local/send", json={"person_id": "admin", "text": "看板"}, headers={"Origin": ORIGIN})
        assert r.status_code == 400 and "没有这个人" in r.text
    with db.session() as s:
        assert s.get(Person, "admin") is None


@pytest.mark.parametrize("host,environment,credentials,expected", [
    ("127.0.0.1", "development", False, "本地模式"),
    ("0.0.0.0", "development", False, "本地对话页未开启"),
    ("127.0.0.1", "production", False, None),
    ("127.0.0.1", "development", True, None),
])
def test_serve_start_up_line_follows_the_rule(monkeypatch, tmp_path, host, environment, credentials, expected):
    from typer.testing import CliRunner

    import bot.cli as cli
    from config.settings import get_settings

    calls = []
    monkeypatch.setattr(cli, "_run_server", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setenv("QUNZHI_DATABASE_URL", f"sqlite:///{tmp_path / 'q.db'}")
    monkeypatch.setenv("QUNZHI_ENVIRONMENT", environment)
    monkeypatch.setenv("QUNZHI_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("QUNZHI_PSEUDONYM_KEY", "a-separate-pseudonym-key")
    monkeypatch.setenv("QUNZHI_INGEST_WRITER", "thread")
    monkeypatch.setenv("QUNZHI_BRIDGE_SECRET", "bridge-secret-for-tests")
    if credentials:
        from tests.conftest import AIBOT_AES_KEY, AIBOT_TOKEN

        monkeypatch.setenv("QUNZHI_AIBOT_TOKEN", AIBOT_TOKEN)
        monkeypatch.setenv("QUNZHI_AIBOT_AES_KEY", AIBOT_AES_KEY)
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(cli.app, ["serve", "--host", host, "--port", "8765", "--no-scheduler"])
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 0, r.output
    assert len(calls) == 1 and calls[0][1]["host"] == host
    assert calls[0][0].state.bind_host == host
    if expected is None:
        assert "本地" not in r.output
    else:
        assert expected in r.output
        if expected == "本地模式":
            assert f"http://{host}:8765/local" in r.output
