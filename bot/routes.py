"""Every router of the app: the app's own (``bot.api``, ``bot.dashboard``) and each registered
platform's inbound router (``platforms.registry``: a new platform adds its line there, not here).

A platform may also list ``fast_routes``: ``(path, endpoint, methods)`` of its busiest endpoints
(the platform callbacks, its inbound module's ``FAST_ROUTES``), where the endpoint is usually
``platforms.common.raw_endpoint(handle)`` around the same ``handle`` its FastAPI route calls. Each
is put first in the routing table as a plain Starlette ``Route``, so a callback is matched first and
skips FastAPI's dependency solving and Starlette's Request wrapping; the FastAPI route stays, for the
OpenAPI schema and docs.
"""
from __future__ import annotations

import importlib

from fastapi import FastAPI
from starlette.routing import Route

from platforms.registry import all_platforms

APP_ROUTERS = [
    "bot.api",        # /api/groups
    "bot.dashboard",  # /dashboard
    "bot.metrics",    # /metrics (loopback or the admin token)
]


def include_routes(app: FastAPI) -> None:
    for name in APP_ROUTERS:
        app.include_router(importlib.import_module(name).router)
    fast: list[Route] = []
    for platform in all_platforms():
        app.include_router(platform.router)
        fast += [Route(path, endpoint, methods=methods, include_in_schema=False)
                 for path, endpoint, methods in platform.fast_routes]
    app.router.routes[0:0] = fast
