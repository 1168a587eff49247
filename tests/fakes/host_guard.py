"""The hook the host-guard test (tests/security/test_platform_hosts.py) finds per platform.

A platform ``<name>`` in ``platforms.registry`` whose sender can send joins the test by defining,
in ``tests/fakes/fake_<name>.py``, a function ``host_guard()``: a context manager (a generator
decorated with ``contextlib.contextmanager``) that starts the platform's fake server and yields a
:class:`HostGuard`:

* ``settings``: the settings overrides that point the platform at the fake (its API base or host,
  credentials), passed to ``tests.conftest.make_settings``;
* ``exercise(sender)``: makes every kind of call the sender has (messages, cards, token refresh,
  every ``GroupOps`` method the platform declares), so each reaches the network once at least;
* ``address``: ``(host, port)`` of the fake: every connection the sender opens must go there.

The test builds ``platform.sender(make_settings(**guard.settings))``, records every socket
``connect`` while ``exercise`` runs, and fails if any went elsewhere or none was made. A platform
whose sender is not None under its hook's settings and that has no hook fails the test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class HostGuard:
    settings: dict[str, Any]
    exercise: Callable[[Any], None]
    address: tuple[str, int]
    notes: list[str] = field(default_factory=list)
