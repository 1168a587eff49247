"""No call of any registered platform's sender reaches a host other than the one it is configured
with (private deployments: 政务微信 and other 私有化 WeCom serve the API on their own host).

The test iterates ``platforms.registry``: each platform's hook ``host_guard()`` in
``tests/fakes/fake_<name>.py`` (contract: tests/fakes/host_guard.py) starts its fake and says how to
exercise the sender; every socket connection made meanwhile must go to the fake's address."""
from __future__ import annotations

import importlib
import socket

import pytest

from platforms.registry import all_platforms
from tests.conftest import make_settings

def _hook(name: str):
    try:
        module = importlib.import_module(f"tests.fakes.fake_{name}")
    except ModuleNotFoundError:
        return None
    return getattr(module, "host_guard", None)


@pytest.mark.parametrize("name", [p.name for p in all_platforms()])
def test_every_call_of_the_sender_goes_to_the_configured_host(name, monkeypatch):
    platform = next(p for p in all_platforms() if p.name == name)
    hook = _hook(name)
    if hook is None:
        if platform.sender(make_settings()) is None:
            return  # sends nothing (local mode): nothing to guard
        pytest.fail(f"{name} has a sender but tests/fakes/fake_{name}.py defines no host_guard() "
                    "(tests/fakes/host_guard.py)")
    with hook() as guard:
        sender = platform.sender(make_settings(**guard.settings))
        assert sender is not None, f"{name}: no sender with the hook's settings"
        seen: list = []
        real = socket.socket.connect

        def recording(sock, address):
            seen.append(address[:2] if isinstance(address, tuple) else address)
            return real(sock, address)

        monkeypatch.setattr(socket.socket, "connect", recording)
        try:
            guard.exercise(sender)
        finally:
            monkeypatch.setattr(socket.socket, "connect", real)
    assert seen, f"{name}: the exercise made no connection"
    wrong = [a for a in seen if tuple(a) != tuple(guard.address)]
    assert wrong == [], f"{name}: connections to other hosts than {guard.address}: {wrong}"


def test_the_guard_sees_a_wrong_host():
    """The check itself can fail: WeCom pointed at one fake while a call goes to another port."""
    from tests.fakes.fake_wecom import FakeWeCom, host_guard

    other = FakeWeCom().start()
    try:
        with host_guard() as guard:
            sender = all_platforms()[0].sender(make_settings(**guard.settings))
            seen = []
            real = socket.socket.connect

            def recording(sock, address):
                seen.append(address[:2])
                return real(sock, address)

            socket.socket.connect = recording
            try:
                sender.api_base = other.base_url  # a stray host, as a bug would introduce
                sender.client.API_BASE_URL = other.base_url
                sender.send_text(["a"], "你好")
            finally:
                socket.socket.connect = real
        assert [a for a in seen if tuple(a) != tuple(guard.address)]
    finally:
        other.stop()
