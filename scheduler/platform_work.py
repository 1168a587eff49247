"""Platform work a chat command asked for, carried out outside the command's transaction:
建群 (``storage.creation``). Run every minute by the job ``platform_requests``.

For each due request: it is committed as ``running`` first, then the platform's ``group_create``
is called (no transaction open), then the outcome is recorded in one transaction: the group
registered (``creation.created``), refused (``PermanentSendError``: nothing registered, the person
told), or tried again later (``TransientSendError``; refused after ``creation.MAX_ATTEMPTS``).
A request a dead process left ``running`` becomes ``uncertain`` (``creation.recover``): the group
is never created twice. A rate-limited platform stops this run.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from platforms.base import PermanentSendError, TransientSendError
from platforms.registry import owner_of
from storage import creation

log = logging.getLogger("qunzhi.platform_work")


def run_requests(db, now: datetime, settings, senders: Mapping[str, object]) -> dict[str, int]:
    """Carry out the due requests; ``senders``: platform name → its ``GroupOps``. Returns counts
    by outcome (done, failed, retry, uncertain, waiting)."""
    out = {"done": 0, "failed": 0, "retry": 0, "uncertain": 0, "waiting": 0}
    with db.session() as s:
        out["uncertain"] = creation.recover(s, now)
    with db.session() as s:
        ids = creation.claim(s, now)
    for n, rid in enumerate(ids):
        with db.session() as s:
            req = creation.get(s, rid)
            platform, payload = req.platform, dict(req.payload)
        ops = senders.get(platform)
        if ops is None:  # the platform is not configured any more: wait for it
            with db.session() as s:
                creation.retry_later(s, rid, f"{platform}: 未配置发送通道", now)
            out["waiting"] += 1
            continue
        try:
            chat_id = ops.group_create(payload["name"], payload["owner_account"],
                                       [m["account"] for m in payload["members"]])
        except TransientSendError as e:
            with db.session() as s:
                status = creation.retry_later(s, rid, str(e), now)
            out["failed" if status == "failed" else "retry"] += 1
            if e.rate_limited:  # the platform asked us to slow down: the rest wait for the next run
                with db.session() as s:
                    for later in ids[n + 1:]:
                        creation.retry_later(s, later, "rate limited: not tried this run", now)
                out["retry"] += len(ids) - n - 1
                break
            continue
        except PermanentSendError as e:
            log.warning("group_create refused for request %s: %s", rid, e)
            with db.session() as s:
                creation.refused(s, rid, str(e), now, reason="平台拒绝建群（" + str(e)[:80] + "）")
            out["failed"] += 1
            continue
        owner = owner_of(platform)
        with db.session() as s:
            creation.created(s, rid, str(chat_id), now, settings,
                             activity=owner.capabilities.activity if owner is not None else None)
        out["done"] += 1
    if any(out.values()):
        log.info("platform requests: %s", out)
    return out
