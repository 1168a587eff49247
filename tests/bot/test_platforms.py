"""The platform abstraction: one folder and one registry line make a platform (its routes are
mounted, ``qunzhi serve`` describes it, its reply deadline answers 503, its capabilities are looked
up); deadlines per platform; settings grouped per platform; local mode takes the callbacks' path."""
from __future__ import annotations

import json
import textwrap
import time

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Route

from bot.app import create_app
from bot.runtime import Runtime
from config.settings import Settings
from platforms import registry
from platforms.capabilities import for_platform
from tests.bot.helpers import WeComSim
from tests.conftest import ADMIN_TOKEN, make_settings

ORIGIN = "http://127.0.0.1:8000"

# A platform nobody ships: its folder (two modules) is all it takes, plus its line in the registry.
THROWAWAY_INIT = '''
from platforms.base import ORDER, Capabilities, PlatformBase, startup_line


class Throwaway(PlatformBase):
    name = "throwaway"
    title = "试验平台"
    inbound = "qz_throwaway.inbound"
    channels = ("throwaway",)
    capabilities = Capabilities(ORDER, cards=True)
    reply_deadline = 3.0

    def configured(self, settings):
        return True

    def describe(self, settings, *, host, port):
        return startup_line(self.title, True, "试验消息（/throwaway/events）", "无")


platform = Throwaway()
'''
THROWAWAY_INBOUND = '''
import json
from datetime import datetime, timezone

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from governance.events import Event
from platforms.common import dispatch, inbox, raw_endpoint

router = APIRouter()


async def handle(app, q, body):
    data = json.loads(body)
    event = Event(platform="throwaway", kind="message", sender_id=data["from"], text=data["text"],
                  at=datetime.now(timezone.utc), msg_id=data["id"])
    replies = await dispatch(inbox(app), event, "throwaway")
    if isinstance(replies, Response):
        return replies
    return JSONResponse({"replies": [r.text for r in replies]})


FAST_ROUTES = [("/throwaway/events", raw_endpoint(handle), ["POST"])]
'''


@pytest.fixture
def throwaway(tmp_path, monkeypatch):
    """Add the folder ``qz_throwaway/`` and its line to the registry (nothing else)."""
    folder = tmp_path / "qz_throwaway"
    folder.mkdir()
    (folder / "__init__.py").write_text(textwrap.dedent(THROWAWAY_INIT), encoding="utf-8")
    (folder / "inbound.py").write_text(textwrap.dedent(THROWAWAY_INBOUND), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "PLATFORMS", [*registry.PLATFORMS, "qz_throwaway"])
    import qz_throwaway

    yield qz_throwaway.platform
    import sys

    for name in ("qz_throwaway", "qz_throwaway.inbound"):
        sys.modules.pop(name, None)


def _post(c, text: str, msg_id: str):
    return c.post("/throwaway/events", content=json.dumps({"from": "u1", "text": text, "id": msg_id}))


def test_a_new_platform_is_one_folder_and_one_registry_line(throwaway, runtime):
    app = create_app(runtime=runtime, start_scheduler=False)
    fast = [r for r in app.router.routes if type(r) is Route]
    assert "/throwaway/events" in [r.path for r in fast]  # routed first, as the callbacks are
    with TestClient(app) as c:
        r = _post(c, "帮助", "t-1")
        assert r.status_code == 200 and r.json()["replies"], r.text
    assert registry.owner_of("throwaway") is throwaway  # its own name wins over the bridge's "any platform"
    assert registry.by_channel("throwaway") is throwaway
    assert for_platform("throwaway").cards and for_platform("throwaway").method == "order"
    assert runtime.reply_deadline("throwaway") == 3.0


def test_serve_prints_one_line_per_platform_the_new_one_included(throwaway, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import bot.cli as cli
    from config.settings import get_settings

    monkeypatch.setattr(cli, "_run_server", lambda app, **kw: None)
    for name, value in {"QUNZHI_DATABASE_URL": f"sqlite:///{tmp_path / 'q.db'}", "QUNZHI_ENVIRONMENT": "production",
                        "QUNZHI_ADMIN_TOKEN": ADMIN_TOKEN, "QUNZHI_PSEUDONYM_KEY": "a-separate-pseudonym-key",
                        "QUNZHI_INGEST_WRITER": "thread", "QUNZHI_BRIDGE_SECRET": "bridge-secret-for-tests",
                        "QUNZHI_BRIDGE_URL": "http://127.0.0.1:9/inbox"}.items():
        monkeypatch.setenv(name, value)
    for name in ("QUNZHI_WECOM_CORP_ID", "QUNZHI_WECOM_TOKEN", "QUNZHI_WECOM_AES_KEY", "QUNZHI_AIBOT_TOKEN",
                 "QUNZHI_AIBOT_AES_KEY", "QUNZHI_FEISHU_APP_ID", "QUNZHI_FEISHU_ENCRYPT_KEY",
                 "QUNZHI_FEISHU_VERIFICATION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(cli.app, ["serve", "--host", "0.0.0.0", "--port", "8765", "--no-scheduler"])
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    by_title = {p.title: [ln for ln in lines if p.title in ln] for p in registry.all_platforms()
                if p.name != "local"}
    assert all(len(found) == 1 for found in by_title.values()), by_title
    assert "未配置" in by_title["企业微信自建应用"][0] and "QUNZHI_WECOM_TOKEN" in by_title["企业微信自建应用"][0]
    assert "未配置" in by_title["企业微信智能机器人"][0]
    bridge = by_title["桥接（个人微信等）"][0]
    assert "已配置" in bridge and "/bridge/events" in bridge and "QUNZHI_BRIDGE_URL" in bridge
    assert by_title["试验平台"] == ["试验平台：已配置；接收试验消息（/throwaway/events）；发送无。"]
    assert any("/local" in ln and "未开启" in ln for ln in lines)  # the local page's line, off in production
    assert "未配置" in by_title["飞书自建应用"][0] and "QUNZHI_FEISHU_ENCRYPT_KEY" in by_title["飞书自建应用"][0]
    assert sum(ln.startswith(("试验平台", "企业微信", "桥接", "网页对话页", "飞书", "钉钉")) for ln in lines) == len(registry.PLATFORMS)


def test_the_503_deadline_comes_from_the_platform(throwaway, runtime, clock, monkeypatch):
    """WeCom (and the AI bot) answer within their 5 s with a deadline under it; a platform with a
    shorter one (Feishu: 3 s) answers its retry signal at its own deadline, not WeCom's."""
    for name in ("wecom", "aibot"):
        assert 0 < registry.by_name(name).reply_deadline < 5
    assert runtime.reply_deadline("wechat") == registry.by_name("bridge").reply_deadline
    monkeypatch.setattr(throwaway, "reply_deadline", 0.0)  # before the runtime first asks
    with TestClient(create_app(runtime=runtime, start_scheduler=False)) as c:
        # A zero deadline: a fast machine may store an event within the loop's turn, so send a few.
        answers = []
        for i in range(20):
            answers.append(_post(c, "帮助", f"t-2-{i}").status_code)
            if answers[-1] != 200:
                break
        assert answers[-1] == 503, answers
        assert WeComSim(c, clock).say("wangwu", "帮助", "700001").status_code == 200  # WeCom's 4 s: in time


def test_settings_grouped_per_platform_read_the_documented_names(monkeypatch):
    env = {"QUNZHI_WECOM_CORP_ID": "ww-corp", "QUNZHI_WECOM_TOKEN": "wecom-token", "QUNZHI_WECOM_SECRET": "s3",
           "QUNZHI_AIBOT_TOKEN": "aibot-token", "QUNZHI_BRIDGE_SECRET": "bridge-secret",
           "QUNZHI_BRIDGE_URL": "http://127.0.0.1:9/inbox"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = Settings(_env_file=None)
    assert (s.wecom.corp_id, s.wecom.token, s.wecom.secret) == ("ww-corp", "wecom-token", "s3")
    assert s.wecom.configured is s.wecom_configured is False  # no AES key
    assert (s.aibot.token, s.aibot.configured) == ("aibot-token", False)
    assert (s.bridge.secret, s.bridge.url, s.bridge.configured, s.bridge.sends) == (
        "bridge-secret", "http://127.0.0.1:9/inbox", True, True)
    assert registry.by_name("bridge").sender(s).url == "http://127.0.0.1:9/inbox"
    assert registry.by_name("bridge").sender(s.model_copy(update={"bridge_url": ""})) is None
    assert registry.by_name("wecom").sender(s) is None  # no AES key: not configured
    wecom = s.model_copy(update={"wecom_aes_key": "a" * 43})
    assert wecom.wecom.configured and wecom.wecom.sends
    assert registry.by_name("wecom").sender(wecom).__class__.__name__ == "WeComSender"
    assert registry.by_name("wecom").sender(wecom.model_copy(update={"wecom_secret": ""})) is None


def test_local_mode_takes_the_callbacks_path(db, clock, monkeypatch):
    """A message typed on /local goes through ``Runtime.process_async`` like a callback: the local
    platform's deadline applies, and a reply that missed it arrives through the outbox."""
    monkeypatch.setattr(registry.by_name("local"), "reply_deadline", 0.0)
    settings = make_settings(database_url=db.url, wecom_corp_id="", wecom_token="", wecom_aes_key="",
                             wecom_secret="", aibot_token="", aibot_aes_key="")
    app = create_app(runtime=Runtime(settings, db=db, clock=clock), start_scheduler=False, bind_host="127.0.0.1")
    with TestClient(app, base_url=ORIGIN) as c:
        assert c.get("/local").status_code == 200  # seeds the demo cadres
        assert c.get("/local/static/local.js").status_code == 200
        # A zero deadline: a fast machine may store an event within the loop's turn, so send a few.
        for _ in range(20):
            r = c.post("/local/send", json={"person_id": "zhang.zz", "text": "帮助"}, headers={"Origin": ORIGIN})
            if r.status_code != 200:
                break
        assert r.status_code == 503 and "处理超时" in r.json()["detail"]
        for _ in range(100):
            pushed = c.get("/local/inbox", params={"person_id": "zhang.zz"}).json()["messages"]
            if pushed:
                break
            time.sleep(0.05)
        assert pushed and "报备" in pushed[0]["text"]
