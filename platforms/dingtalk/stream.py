"""DingTalk Stream mode (``QUNZHI_DINGTALK_STREAM=true``): for a county without a public URL,
``qunzhi serve`` opens the connection itself (``dingtalk-stream``'s ``DingTalkStreamClient``:
``POST {api_base}/v1.0/gateway/connections/open`` with the AppKey/AppSecret, then the websocket
it names) and receives the robot's messages (topic ``/v1.0/im/bot/messages/get``) and card clicks
(``/v1.0/card/instances/callback``) over it. No signature header here: the connection itself is
authenticated by the app's credentials.

The client runs in its own thread with its own event loop (the SDK's blocking calls stay off the
web app's loop); each message is handed to the web app's runtime on the app's loop
(``inbound.handle_robot``, the same path as the HTTP callback: validation, dedupe, the reply
deadline) and acknowledged after it is stored (a 503-equivalent: ack ``STATUS_SYSTEM_EXCEPTION``
so DingTalk redelivers; malformed input: ack OK and a log line, it would never get better). A
single short reply goes back through the message's ``sessionWebhook`` when that is on the
configured classic host, else to the person through the outbox.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any
from urllib.parse import quote_plus, urlsplit

import dingtalk_stream
import requests
import websockets
from dingtalk_stream import AckMessage, ChatbotMessage
from dingtalk_stream.frames import CallbackMessage
from starlette.responses import Response

from platforms.common import inbox
from platforms.dingtalk import inbound
from platforms.wecom.crypto import CallbackError

log = logging.getLogger("qunzhi.dingtalk.stream")

CONNECT_TIMEOUT = 10.0
RETRY_SECONDS = 5.0


class Client(dingtalk_stream.DingTalkStreamClient):
    """The SDK's client with the gateway on the configured host, a timeout, and no probe of
    8.8.8.8 for the local address."""

    def __init__(self, credential, *, api_base: str):
        super().__init__(credential, logger=logging.getLogger("qunzhi.dingtalk.stream.sdk"))
        self.api_base = api_base.rstrip("/")

    def open_connection(self):
        topics = [{"type": "CALLBACK", "topic": t} for t in self.callback_handler_map]
        try:
            res = requests.post(self.api_base + "/v1.0/gateway/connections/open", timeout=CONNECT_TIMEOUT, json={
                "clientId": self.credential.client_id, "clientSecret": self.credential.client_secret,
                "subscriptions": topics, "ua": "qunzhi", "localIp": ""})
            res.raise_for_status()
            return res.json()
        except (requests.RequestException, ValueError) as e:
            log.error("dingtalk stream: opening the connection failed: %s", e)
            return None

    def get_host_ip(self):
        return ""

    async def start(self):
        """The SDK's loop, but a cancellation stops it (the SDK's own catches CancelledError and
        reconnects) and opening the connection runs off the loop."""
        self.pre_start()
        while True:
            connection = await asyncio.to_thread(self.open_connection)
            if not connection or not connection.get("endpoint"):
                await asyncio.sleep(RETRY_SECONDS)
                continue
            uri = f'{connection["endpoint"]}?ticket={quote_plus(str(connection.get("ticket", "")))}'
            try:
                async with websockets.connect(uri) as ws:
                    self.websocket = ws
                    keep = asyncio.create_task(self.keepalive(ws))
                    try:
                        async for raw in ws:
                            try:
                                frame = json.loads(raw)
                            except ValueError:
                                log.warning("dingtalk stream: a frame that is not JSON, ignored")
                                continue
                            asyncio.create_task(self.background_task(frame))
                    finally:
                        keep.cancel()
            except (websockets.exceptions.WebSocketException, OSError) as e:
                log.warning("dingtalk stream: connection lost (%s), reconnecting", e)
            await asyncio.sleep(RETRY_SECONDS)


class _Handler(dingtalk_stream.CallbackHandler):
    def __init__(self, stream: "Stream", parse):
        super().__init__()
        self.stream, self.parse = stream, parse

    async def process(self, message: CallbackMessage):
        data = message.data if isinstance(message.data, dict) else {}
        return await asyncio.wrap_future(self.stream.submit(data, self.parse))


class Stream:
    """One running Stream connection for the web app ``app`` (its runtime, its loop)."""

    def __init__(self, app, loop: asyncio.AbstractEventLoop):
        self.app, self.loop = app, loop
        self.settings = inbox(app).settings
        d = self.settings.dingtalk
        self.client = Client(dingtalk_stream.Credential(d.app_key, d.app_secret), api_base=d.api_base)
        self.client.register_callback_handler(ChatbotMessage.TOPIC, _Handler(self, inbound.to_event))
        self.client.register_callback_handler(dingtalk_stream.CallbackHandler.TOPIC_CARD_CALLBACK,
                                              _Handler(self, inbound.card_event))
        self._thread: threading.Thread | None = None
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None

    def submit(self, data: dict[str, Any], parse):
        """Run ``handle`` on the web app's loop; a concurrent future of (ack code, message)."""
        return asyncio.run_coroutine_threadsafe(self.handle(data, parse), self.loop)

    async def handle(self, data: dict[str, Any], parse) -> tuple[int, Any]:
        rt = inbox(self.app)
        try:
            out = await inbound.handle_robot(rt, data, parse=parse)
        except CallbackError as e:
            log.warning("dingtalk stream message refused (%s): %s", e.status, e.reason)
            return AckMessage.STATUS_OK, "refused"
        if isinstance(out, Response):
            if out.status_code >= 500:
                return AckMessage.STATUS_SYSTEM_EXCEPTION, "not stored yet"
            return AckMessage.STATUS_OK, "OK"
        if out is not None:
            await asyncio.to_thread(self._reply, data, out)
        return AckMessage.STATUS_OK, "OK"

    def _reply(self, data: dict[str, Any], body: dict) -> None:
        hook = str(data.get("sessionWebhook") or "")
        if urlsplit(hook).netloc != urlsplit(self.settings.dingtalk.oapi_base).netloc:
            log.warning("dingtalk stream: sessionWebhook not on the configured host; reply dropped")
            return
        try:
            requests.post(hook, data=json.dumps(body, ensure_ascii=False).encode(), timeout=CONNECT_TIMEOUT,
                          headers={"Content-Type": "application/json"}).raise_for_status()
        except requests.RequestException as e:
            log.warning("dingtalk stream: reply through sessionWebhook failed: %s", e)

    # --- the thread ------------------------------------------------------------------------------
    def start(self) -> "Stream":
        self._thread = threading.Thread(target=self._run, name="dingtalk-stream", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        loop = self._own_loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._task = loop.create_task(self.client.start())
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass  # stopped
        finally:
            loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        loop, task = self._own_loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(timeout)


def start(app, loop: asyncio.AbstractEventLoop) -> Stream | None:
    """Start Stream mode for the web app when configured (``QUNZHI_DINGTALK_STREAM``)."""
    d = inbox(app).settings.dingtalk
    if not (d.configured and d.stream):
        return None
    log.info("dingtalk stream mode: connecting through %s", d.api_base)
    return Stream(app, loop).start()
