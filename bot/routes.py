"""Every router of the app, in one list: a new platform adds its adapter's router here."""
from __future__ import annotations

import importlib
import logging

from fastapi import FastAPI

log = logging.getLogger("qunzhi.routes")

ROUTERS = [
    "bot.api",                 # /api/groups
    "bot.adapters.wecom",      # /wecom/callback
    "bot.adapters.aibot",      # /wecom/aibot/callback
    "bot.adapters.bridge",     # /bridge/events
    "bot.adapters.local",      # /local (chat page without WeCom)
    "bot.dashboard",           # /dashboard
]


def include_routes(app: FastAPI) -> None:
    for name in ROUTERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue  # not built yet
            raise
        if hasattr(module, "router"):  # TEMP while parts land in parallel; made strict at integration
            app.include_router(module.router)
