"""One place that builds the database, services and clients, shared by the app, CLI and jobs."""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Callable

from starlette.concurrency import run_in_threadpool

from bot.settings import Settings
from handlers.context import Services, utcnow
from handlers.dispatch import handle_event
from handlers.events import Event, Reply
from storage.db import Database
from storage.outbox import enqueue

log = logging.getLogger("qunzhi.runtime")

REPLY_DEADLINE = 4.0  # seconds: WeCom drops the connection after 5


class Runtime:
    def __init__(self, settings: Settings, *, db: Database | None = None,
                 clock: Callable[[], datetime] = utcnow, migrate: bool = True):
        self.settings = settings
        self.db = db or Database(settings.database_url, migrate=migrate)
        self.clock = clock
        self.services = Services(settings=settings, clock=clock)
        self.scheduler = None  # set by scheduler.service when running in-process

    def now(self) -> datetime:
        return self.clock()

    def process(self, event: Event) -> list[Reply]:
        """Handle one event in its own transaction (blocking)."""
        with self.db.session() as s:
            return handle_event(s, event, self.services)

    async def process_async(self, event: Event, *, deadline: float = REPLY_DEADLINE,
                            reply_channel: str | None = None) -> list[Reply] | None:
        """Run the handler off the event loop. If it misses the deadline, answer nothing now and
        let the replies go out through the outbox when the work is done (None is returned)."""
        task = asyncio.ensure_future(run_in_threadpool(self.process, event))
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout=deadline)
        except asyncio.TimeoutError:
            log.warning("handler for %s missed the %.1fs deadline; replying via outbox", event.dedupe_key, deadline)
            task.add_done_callback(lambda t: self._late_reply(t, event, reply_channel))
            return None

    def _late_reply(self, task: asyncio.Future, event: Event, channel: str | None) -> None:
        if task.cancelled() or task.exception() is not None:
            log.error("late handler failed for %s: %r", event.dedupe_key,
                      None if task.cancelled() else task.exception())
            return
        replies = task.result()
        if not replies:
            return
        with self.db.session() as s:
            for i, r in enumerate(replies):
                enqueue(s, channel=channel or "user", recipient=event.group_id or event.sender_id, kind="reply",
                        payload={"text": r.text, "card": r.card, "markdown": r.markdown},
                        at=datetime.now(timezone.utc), dedupe_key=f"late:{event.dedupe_key}:{i}")
