"""Every router of the app, in one list: a new platform adds its adapter's router here."""
from __future__ import annotations

import importlib

from fastapi import FastAPI

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
        app.include_router(importlib.import_module(name).router)
