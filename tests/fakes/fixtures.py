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
