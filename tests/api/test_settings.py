"""Settings: placeholder secrets refused outside development, with a clear message."""
import pytest
from pydantic import ValidationError

from bot.settings import Settings


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
    from bot.settings import get_settings

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
