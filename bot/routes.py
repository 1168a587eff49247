"""Every router of the app, in one list: a new platform adds its adapter's router here.

A module may also list ``FAST_ROUTES``: ``(path, endpoint, methods)`` of its busiest endpoints
(the platform callbacks), where the endpoint is usually ``adapters.common.raw_endpoint(handle)``
around the same ``handle`` its FastAPI route calls. Each is put first in the routing table as a
plain Starlette ``Route``, so a callback is matched first and skips FastAPI's dependency solving
and Starlette's Request wrapping; the FastAPI route stays, for the OpenAPI schema and docs.
"""
from __future__ import annotations

import importlib

from fastapi import FastAPI
from starlette.routing import Route

ROUTERS = [
    "bot.api",                 # /api/groups
    "platforms.wecom.inbound",      # /wecom/callback
    "platforms.aibot.inbound",      # /wecom/aibot/callback
    "platforms.bridge.inbound",     # /bridge/events
    "platforms.local.inbound",      # /local (chat page without WeCom)
    "bot.dashboard",           # /dashboard
    "bot.metrics",             # /metrics (loopback or the admin token)
]


def include_routes(app: FastAPI) -> None:
    fast: list[Route] = []
    for name in ROUTERS:
        module = importlib.import_module(name)
        app.include_router(module.router)
        fast += [Route(path, endpoint, methods=methods, include_in_schema=False)
                 for path, endpoint, methods in getattr(module, "FAST_ROUTES", ())]
    app.router.routes[0:0] = fast
