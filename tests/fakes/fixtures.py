"""pytest fixtures for the fakes (registered in tests/conftest.py via ``pytest_plugins``)."""
from __future__ import annotations

import pytest

from tests.fakes.fake_wecom import FakeWeCom


@pytest.fixture
def fake_wecom():
    """A running fake WeCom API server; point ``settings.wecom_api_base`` at ``fake_wecom.base_url``."""
    server = FakeWeCom().start()
    yield server
    server.stop()


@pytest.fixture
def fake_bridge():
    """A running fake bridge inbox; point ``settings.bridge_url`` at ``fake_bridge.url``."""
    from tests.conftest import BRIDGE_SECRET
    from tests.fakes.fake_bridge import FakeBridge

    server = FakeBridge(BRIDGE_SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def fake_aibot():
    """A running fake of the AI bot's response URLs (``fake_aibot.issue()`` gives one)."""
    from tests.fakes.fake_aibot import FakeAibot

    server = FakeAibot().start()
    yield server
    server.stop()


@pytest.fixture
def fake_feishu():
    """A running fake Feishu open platform; point ``QUNZHI_FEISHU_DOMAIN`` at ``fake_feishu.domain``."""
    from tests.fakes.fake_feishu import FakeFeishu

    server = FakeFeishu().start()
    yield server
    server.stop()


@pytest.fixture
def group_platform(monkeypatch):
    """A running fake group platform (tests/fakes/fake_groups.py), registered in
    ``platforms.registry`` as ``testgroups`` for the test: its sender implements ``GroupOps`` over
    HTTP to the fake; ``fake_groups.platform.capabilities`` may be replaced by the test."""
    from platforms import registry
    from tests.fakes import fake_groups

    server = fake_groups.FakeGroupServer().start()
    monkeypatch.setattr(registry, "PLATFORMS", [*registry.PLATFORMS, "tests.fakes.fake_groups"])
    monkeypatch.setattr(fake_groups.platform, "base_url", server.base_url)
    monkeypatch.setattr(fake_groups.platform, "capabilities", fake_groups.FULL)
    yield server
    server.stop()


@pytest.fixture
def fake_dingtalk():
    """A running fake DingTalk API (both hosts); point QUNZHI_DINGTALK_API_BASE/OAPI_BASE at ``.url``."""
    from tests.fakes.fake_dingtalk import FakeDingTalk

    server = FakeDingTalk().start()
    yield server
    server.stop()
