"""bot/server.py pieces that need no server: the repeated-log filter and the connection cap."""
from __future__ import annotations

import logging

import pytest

from bot import server
from tests.conftest import make_settings


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _record(msg, *args, exc=None, name="asyncio", level=logging.ERROR):
    return logging.LogRecord(name, level, __file__, 1, msg, args, (type(exc), exc, None) if exc else None)


def test_identical_records_are_rate_limited_and_counted():
    clock = FakeClock()
    f = server.RepeatFilter(burst=3, window=60, clock=clock)
    passed = [f.filter(_record("socket.accept() out of system resource\nsocket: <fd=%d>" % i, exc=OSError(24, "x")))
              for i in range(1000)]
    assert passed.count(True) == 3 and passed[:3] == [True] * 3
    assert f.filter(_record("another message")) is True  # a different message has its own budget
    clock.t = 61
    rec = _record("socket.accept() out of system resource\nsocket: <fd=9>", exc=OSError(24, "x"))
    assert f.filter(rec) is True and "997 identical messages suppressed" in rec.getMessage()


def test_templates_with_different_arguments_are_the_same_record():
    f = server.RepeatFilter(burst=2, window=60, clock=FakeClock())
    assert [f.filter(_record("closing a slow connection from %s", f"10.0.0.{i}")) for i in range(5)] == \
        [True, True, False, False, False]


def test_different_exceptions_are_different_records():
    f = server.RepeatFilter(burst=1, window=60, clock=FakeClock())
    assert f.filter(_record("Exception in ASGI application\n", exc=ValueError("a")))
    assert f.filter(_record("Exception in ASGI application\n", exc=KeyError("b")))
    assert not f.filter(_record("Exception in ASGI application\n", exc=ValueError("c")))


@pytest.mark.parametrize("soft,configured,expected", [(160, 1000, 80), (1024, 1000, 512), (65536, 1000, 1000),
                                                      (10, 1000, 8)])
def test_connection_cap_is_at_most_half_the_descriptor_limit(monkeypatch, soft, configured, expected):
    monkeypatch.setattr(server.resource, "getrlimit", lambda _what: (soft, soft))
    limit = server.max_connections(make_settings(http_max_connections=configured))
    assert limit == expected
    assert limit + 4 * server.accept_backlog(limit) <= max(soft, 8 + 4 * 16)


def test_slow_client_settings_are_validated():
    from pydantic import ValidationError

    for bad in ({"http_header_timeout": 0}, {"http_body_timeout": -1}, {"http_max_connections": 0}):
        with pytest.raises(ValidationError) as e:
            make_settings(**bad)
        assert "拒绝启动" in str(e.value) and "QUNZHI_" + next(iter(bad)).upper() in str(e.value)
    s = make_settings()
    assert (s.http_header_timeout, s.http_body_timeout, s.http_max_connections) == (10.0, 30.0, 1000)
