"""Where job functions find the runtime (as python-telegram-bot's JobQueue does).

Jobs are stored in the database as references to module-level functions with plain
arguments (a runtime key), never as pickled runtimes or bound methods.
"""
from __future__ import annotations

from typing import Any

_RUNTIMES: dict[str, Any] = {}
DEFAULT_KEY = "default"


def register(runtime: Any, key: str = DEFAULT_KEY) -> None:
    _RUNTIMES[key] = runtime


def unregister(key: str = DEFAULT_KEY) -> None:
    _RUNTIMES.pop(key, None)


def get(key: str = DEFAULT_KEY) -> Any:
    try:
        return _RUNTIMES[key]
    except KeyError:
        raise LookupError(f"no runtime registered under {key!r}: start the scheduler through scheduler.service") from None
