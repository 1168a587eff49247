"""The FastAPI application: thin routes that verify, parse to a neutral event, dispatch, reply."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.requests import ClientDisconnect

from bot.runtime import Runtime
from config.settings import Settings, get_settings

log = logging.getLogger("qunzhi.app")


class BodyLimitMiddleware:
    """Refuse bodies over the limit with 413 before reading them all (pure ASGI)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    too_big = int(v) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    return await PlainTextResponse("请求体过大", status_code=413)(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return msg

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await PlainTextResponse("请求体过大", status_code=413)(scope, receive, send)
        except ClientDisconnect:
            # The client went away (or was cut off as too slow, bot/server.py) before its body
            # arrived: nobody to answer, and no server error to log with a traceback.
            log.info("client disconnected before sending its whole request: %s %s", scope.get("method"),
                     scope.get("path"))


class LocalGate:
    """Outside local mode every /local path is 404, before routing (no redirect, no 405 or 422)."""

    def __init__(self, app, enabled: bool):
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope, receive, send):
        if not self.enabled and scope["type"] == "http":
            path = scope.get("path", "")
            if path == "/local" or path.startswith("/local/"):
                return await PlainTextResponse("没有这个页面", status_code=404)(scope, receive, send)
        return await self.app(scope, receive, send)


class _TooLarge(Exception):
    """The streamed body passed the limit (no Content-Length to refuse it up front)."""


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None,
               start_scheduler: bool | None = None, bind_host: str | None = None,
               start_streams: bool = False) -> FastAPI:
    """``bind_host`` is the address the server listens on (``qunzhi serve --host``); local mode
    needs a loopback one, and an unknown host (None, e.g. a test client) is not loopback."""
    settings = settings or (runtime.settings if runtime else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        rt: Runtime = app.state.runtime
        await rt.start_writer()
        sched = None
        streams: list = []
        try:
            if start_scheduler if start_scheduler is not None else settings.run_scheduler:
                from scheduler.service import start_in_process

                sched = start_in_process(rt)
            if start_streams:  # connections a platform opens itself (DingTalk Stream mode), `qunzhi serve`
                import asyncio

                from platforms.registry import all_platforms

                for p in all_platforms():
                    started = p.start_stream(app, asyncio.get_running_loop()) if hasattr(p, "start_stream") else None
                    if started is not None:
                        streams.append(started)
            yield
        finally:
            try:
                for started in streams:
                    started.stop()
                if sched is not None:
                    sched.shutdown()
            finally:
                rt.close()  # the writer finishes what it holds (uvicorn has answered every request by now)

    # The API docs and the schema are for developers: outside development they are not served.
    docs = {} if settings.development else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="群治 Qunzhi", version="0.1.0", lifespan=lifespan, **docs)
    app.state.runtime = runtime or Runtime(settings)
    app.state.bind_host = bind_host
    app.state.local_mode = settings.local_mode_on(bind_host)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(LocalGate, enabled=app.state.local_mode)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "local_mode": app.state.local_mode}

    install_chinese_errors(app)
    from bot.routes import include_routes

    include_routes(app)
    return app


# The framework's own answers (unknown path, wrong method, malformed parameters) in Chinese: its
# defaults are English ("Not Found", "Method Not Allowed", pydantic's messages).
FRAMEWORK_PHRASES = {404: "没有这个页面", 405: "不支持这种请求方法", 400: "请求格式错误", 401: "需要登录或令牌",
                     403: "没有权限", 413: "请求体过大", 415: "不支持的内容类型", 429: "请求过于频繁，请稍后再试"}


def install_chinese_errors(app: FastAPI) -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def http_error(request: Request, exc: StarletteHTTPException):
        detail = exc.detail
        if not isinstance(detail, str) or not detail or detail.isascii():  # a framework default phrase
            detail = FRAMEWORK_PHRASES.get(exc.status_code, "请求无法完成")
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def validation_error(request: Request, exc: RequestValidationError):
        log.info("request refused (422): %s", exc.errors()[:5])
        fields = []
        for err in exc.errors():
            loc = [str(x) for x in err.get("loc", ()) if x not in ("query", "path", "body", "header")]
            fields.append({"loc": list(err.get("loc", ())), "msg": f"参数“{'.'.join(loc) or '请求'}”格式不正确",
                           "type": "参数错误"})
        return JSONResponse({"detail": fields}, status_code=422)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)

