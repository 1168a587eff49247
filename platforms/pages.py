"""What the service's HTML pages share (the dashboard, ``bot.dashboard``, and the local chat page,
``platforms.local``): the security headers, a route class that sets them on every answer, errors
included, and the same-origin check for POSTs. Here, below both, so the local page does not import
the web app."""
from __future__ import annotations

from typing import Callable
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
                               "object-src 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class SecureRoute(APIRoute):
    """Adds the security headers to every response of the router (errors included). An
    ``HTTPException`` is answered by ``error_response`` (JSON ``{"detail": ...}`` here; the
    dashboard answers its HTML message page). Static files (a path with ``/static/``) may be cached."""

    def error_response(self, request: Request, e: HTTPException) -> Response:
        return JSONResponse({"detail": e.detail}, status_code=e.status_code)

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def secured(request: Request) -> Response:
            try:
                response = await handler(request)
            except HTTPException as e:
                response = self.error_response(request, e)
            static = "/static/" in request.url.path
            for k, v in SECURITY_HEADERS.items():
                if k == "Cache-Control" and static:
                    continue
                response.headers.setdefault(k, v)
            return response

        return secured


def origin_of(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}".lower()


def check_origin(request: Request, settings) -> None:
    """Refuse cross-site POSTs: Sec-Fetch-Site, Origin and Referer must point at this server."""
    allowed = {origin_of(str(request.base_url)), origin_of(settings.public_base_url)}
    site = request.headers.get("sec-fetch-site")
    if site and site not in ("same-origin", "none"):
        raise HTTPException(403, "跨站请求被拒绝")
    origin = request.headers.get("origin")
    if origin and origin != "null":
        if origin.lower() not in allowed:
            raise HTTPException(403, "跨站请求被拒绝")
        return
    referer = request.headers.get("referer")
    if referer and origin_of(referer) not in allowed:
        raise HTTPException(403, "跨站请求被拒绝")
    # Origin "null"/absent and no Referer (Referrer-Policy: no-referrer): the CSRF token and the
    # SameSite=Strict cookie still have to match.
