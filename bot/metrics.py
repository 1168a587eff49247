"""``GET /metrics``: Prometheus text format, for the county's monitoring.

Answered to a client on a loopback address (the monitoring agent on the same server; the shipped
nginx site never forwards ``/metrics``), or with the admin token (``Authorization: Bearer …``,
through the same throttle as every admin-token guess); anyone else gets 404, as if it did not exist.
"""
from __future__ import annotations

import ipaddress

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
import telemetry
from bot.dashboard.auth import admin_token_attempt, client_address
from storage.outbox import counts_by_status

router = APIRouter()


def _loopback(request: Request, settings) -> bool:
    """The client (behind a trusted proxy: the address it forwarded) is on this machine."""
    host = client_address(request, settings)
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    rt = request.app.state.runtime
    header = request.headers.get("authorization") or ""
    if not _loopback(request, rt.settings):
        given = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not given or not admin_token_attempt(rt, request, given, via="metrics"):
            return JSONResponse({"detail": "没有这个页面"}, status_code=404)
    from telemetry.metrics import OUTBOX_QUEUE

    with rt.db.session() as s:
        for status, n in counts_by_status(s).items():
            OUTBOX_QUEUE.labels(status).set(n)
    body, content_type = telemetry.render()
    return Response(body, media_type=content_type)
