"""Settings: placeholder secrets refused outside development, with a clear message."""
import pytest
from pathlib import Path
from pydantic import ValidationError

from config.settings import Settings


def test_development_accepts_empty_secrets():
    s = Settings(_env_file=None)
    assert s.environment == "development" and s.local_mode and s.database_url.startswith("sqlite:///")


@pytest.mark.parametrize("overrides,bad", [
    ({}, "QUNZHI_ADMIN_TOKEN"),
    ({"admin_token": "changeme"}, "QUNZHI_ADMIN_TOKEN"),
    ({"admin_token": "a-real-long-admin-token", "wecom_corp_id": "ww1", "wecom_token": "xxx",
      "wecom_aes_key": "k" * 43, "wecom_secret": "s" * 20}, "QUNZHI_WECOM_TOKEN"),
    ({"admin_token": "a-real-long-admin-token", "bridge_secret": "secret"}, "QUNZHI_BRIDGE_SECRET"),
    ({"admin_token": "a-real-long-admin-token"}, "QUNZHI_PSEUDONYM_KEY"),
])
def test_production_refuses_placeholders(overrides, bad):
    with pytest.raises(ValidationError) as e:
        Settings(_env_file=None, environment="production", **overrides)
    assert "拒绝启动" in str(e.value) and bad in str(e.value)


def test_production_with_real_secrets_starts():
    s = Settings(_env_file=None, environment="production", admin_token="a-real-long-admin-token",
                 pseudonym_key="a-separate-random-key", wecom_corp_id="ww1", wecom_token="tokentoken",
                 wecom_aes_key="k" * 43, wecom_secret="s" * 20)
    assert s.wecom_configured and not s.local_mode


def test_cli_shows_the_chinese_message(monkeypatch):
    from typer.testing import CliRunner

    from bot.cli import app
    from config.settings import get_settings

    monkeypatch.setenv("QUNZHI_ENVIRONMENT", "production")
    monkeypatch.setenv("QUNZHI_ADMIN_TOKEN", "changeme")
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(app, ["groups"])
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 2 and "拒绝启动" in r.output


def test_env_lists_are_split():
    s = Settings(_env_file=None, protected_categories="领导班子群，机关群, 党建群")
    assert s.protected_categories == ("领导班子群", "机关群", "党建群")


def test_env_lists_from_the_environment(monkeypatch):
    monkeypatch.setenv("QUNZHI_PROTECTED_CATEGORIES", "领导班子群,机关群")
    assert Settings(_env_file=None).protected_categories == ("领导班子群", "机关群")


@pytest.mark.parametrize("environment", ["development", "production"])
@pytest.mark.parametrize("pseudonym_key", ["a-real-long-admin-token", "a-real-long-admin-token-2",
                                           "real-long-admin", "A-REAL-LONG-ADMIN-TOKEN"])
def test_pseudonym_key_must_not_overlap_the_admin_token(environment, pseudonym_key):
    with pytest.raises(ValidationError) as e:
        Settings(_env_file=None, environment=environment, admin_token="a-real-long-admin-token",
                 pseudonym_key=pseudonym_key)
    assert "拒绝启动" in str(e.value) and "QUNZHI_PSEUDONYM_KEY" in str(e.value)


@pytest.mark.parametrize("environment", ["development", "production"])
@pytest.mark.parametrize("field", ["wecom_aes_key", "aibot_aes_key"])
@pytest.mark.parametrize("key", ["k" * 42, "k" * 44, "k" * 42 + "!", "k" * 42 + "=", " " + "k" * 42, "键" * 43])
def test_aes_key_must_be_43_base64_characters(environment, field, key):
    base = dict(admin_token="a-real-long-admin-token", pseudonym_key="a-separate-random-key",
                wecom_corp_id="ww1", wecom_token="tokentoken", wecom_aes_key="k" * 43, wecom_secret="s" * 20,
                aibot_token="aibot-token-long", aibot_aes_key="A" * 43)
    with pytest.raises(ValidationError) as e:
        Settings(_env_file=None, environment=environment, **{**base, field: key})
    assert "拒绝启动" in str(e.value) and "QUNZHI_" + field.upper() in str(e.value)


def test_valid_aes_keys_are_accepted():
    from tests.conftest import AIBOT_AES_KEY, WECOM_AES_KEY

    s = Settings(_env_file=None, wecom_aes_key=WECOM_AES_KEY, aibot_aes_key=AIBOT_AES_KEY)
    assert s.wecom_aes_key == WECOM_AES_KEY and s.aibot_aes_key == AIBOT_AES_KEY


def _production_app():
    from bot.app import create_app
    from bot.runtime import Runtime

    s = Settings(_env_file=None, environment="production", database_url="sqlite://",
                 admin_token="a-real-long-admin-token", pseudonym_key="a-separate-random-key", run_scheduler=False,
                 ingest_writer="thread")
    return create_app(runtime=Runtime(s), start_scheduler=False)


def test_api_docs_off_outside_development():
    from fastapi.testclient import TestClient

    with TestClient(_production_app()) as c:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            assert c.get(path).status_code == 404, path
        assert c.get("/healthz").status_code == 200


def test_api_docs_in_development(client):
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize("env,needle", [
    ({"QUNZHI_WECOM_AES_KEY": "short-secret-key-value"}, "QUNZHI_WECOM_AES_KEY"),
    ({"QUNZHI_ADMIN_TOKEN": "short-secret-key-value", "QUNZHI_PSEUDONYM_KEY": "short-secret-key-value"},
     "QUNZHI_PSEUDONYM_KEY"),
    ({"QUNZHI_HTTP_MAX_CONNECTIONS": "short-secret-key-value"}, "QUNZHI_HTTP_MAX_CONNECTIONS"),
])
def test_cli_configuration_errors_are_chinese_and_do_not_echo_secrets(monkeypatch, env, needle):
    from typer.testing import CliRunner

    from bot.cli import app
    from config.settings import get_settings

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(app, ["groups"])
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 2 and "拒绝启动" in r.output and needle in r.output
    assert "short-secret-key-value" not in r.output
    assert "validation error" not in r.output and "pydantic" not in r.output


def test_ingest_knobs_come_from_settings(monkeypatch):
    monkeypatch.setenv("QUNZHI_GROUP_COMMIT", "0")
    monkeypatch.setenv("QUNZHI_GROUP_COMMIT_MAX", "7")
    monkeypatch.setenv("QUNZHI_BULK_INGEST", "off")
    monkeypatch.setenv("QUNZHI_WRITER_PIPELINE", "")
    ingest = Settings().ingest
    assert (ingest.group_commit, ingest.group_commit_max, ingest.bulk, ingest.pipeline) == (False, 7, False, 2)


def test_the_requests_ca_bundle_variable_is_honoured(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/county-ca.pem")
    assert Settings().ca_bundle == "/etc/ssl/county-ca.pem"
    monkeypatch.setenv("QUNZHI_CA_BUNDLE", "/etc/ssl/other.pem")
    assert Settings().ca_bundle == "/etc/ssl/other.pem"


def test_no_production_module_reads_the_environment_itself():
    """Every variable is read by config.Settings; a module reading os.environ bypasses validation."""
    import ast
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for pkg in ("bot", "handlers", "storage", "scheduler", "governance", "nlu", "platforms"):
        for path in (root / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") \
                        and isinstance(node.value, ast.Name) and node.value.id == "os":
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []
