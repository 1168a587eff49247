"""建群: a group the bot creates on a platform and registers as a temporary group, so that it
can later dissolve it by itself.

The platform is never called inside the chat event's transaction. The command writes a
``PlatformRequest`` (``request_group``, in its transaction, audited ``create_request``); the
scheduler (``scheduler.platform_work``) claims it (:func:`claim`, committed as ``running``), calls
the platform's ``group_create`` outside any transaction, and reports back in one transaction:

* :func:`created`: the platform returned the chat id → the group is registered (temporary, the
  person its owner, the members, the end date, its activity source), audited ``create_group``, and
  the person is told it will be dissolved automatically when its task ends;
* :func:`refused` (the platform said no, or ``MAX_ATTEMPTS`` transient failures): nothing is
  registered, the person is told why (audited ``create_failed``);
* :func:`retry_later` (a transient failure): pending again after a back-off;
* :func:`recover` (a process died while asking the platform): a request left ``running`` becomes
  ``uncertain``: the group may or may not exist, so it is never created twice; the person and
  the administrators are told to check on the platform.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from governance.dates import fmt_date
from governance import labels
from storage import audit, identity, repo
from storage.models import Group, Person, PlatformRequest
from storage.outbox import notify

CREATE_GROUP = "create_group"
MAX_ATTEMPTS = 5
BACKOFF = timedelta(minutes=2)
STUCK_AFTER = timedelta(minutes=10)  # a running request older than this was left by a dead process


@dataclass(frozen=True)
class Member:
    person_id: str
    name: str
    account: str  # the person's id on the platform


def request_group(session: Session, *, platform: str, person: Person, owner_account: str, name: str,
                  members: list[Member], expires_at: date, at: datetime) -> PlatformRequest:
    """Record that ``person`` asked for a group ``name`` on ``platform`` (in the command's
    transaction; the scheduler carries it out)."""
    req = PlatformRequest(kind=CREATE_GROUP, platform=platform, person_id=person.id, status="pending",
                          created_at=at, attempts=0, next_attempt_at=at, payload={
                              "name": name, "owner": person.id, "owner_account": owner_account,
                              "unit": person.unit, "expires_at": expires_at.isoformat(),
                              "members": [{"person_id": m.person_id, "name": m.name, "account": m.account}
                                          for m in members]})
    session.add(req)
    session.flush()
    audit.record(session, actor=person.id, action="create_request", at=at, group_id=None,
                 reason=f"建群：{name}", data={"platform": platform, "request": req.id, "members": len(members),
                                              "expires_at": expires_at.isoformat()})
    return req


def claim(session: Session, now: datetime, *, limit: int = 20) -> list[int]:
    """The due pending requests, marked ``running`` (the caller commits before calling the platform)."""
    stmt = (select(PlatformRequest).where(PlatformRequest.status == "pending",
                                          PlatformRequest.next_attempt_at <= now)
            .order_by(PlatformRequest.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    ids = []
    for req in session.execute(stmt).scalars():
        req.status, req.started_at, req.attempts = "running", now, (req.attempts or 0) + 1
        ids.append(req.id)
    return ids


def get(session: Session, request_id: int) -> PlatformRequest | None:
    return session.get(PlatformRequest, request_id)


def group_id_for(platform: str, chat_id: str) -> str:
    """The stored id of a group the platform calls ``chat_id`` (as its adapter stores it: WeCom's
    own ids, a scoped ``<platform>:<id>`` elsewhere; ``storage.sync.group_id_for``)."""
    from storage.sync import group_id_for as stored_id

    return stored_id(platform, chat_id)


def created(session: Session, request_id: int, chat_id: str, now: datetime, settings, *,
            activity: str | None) -> Group | None:
    """The platform created the group: register it, tell the person. None if the request is not
    running any more (done by another run)."""
    req = _locked(session, request_id)
    if req is None or req.status != "running":
        return None
    p: dict[str, Any] = req.payload
    gid = group_id_for(req.platform, chat_id)
    g = repo.ensure_group(session, group_id=gid, platform=req.platform, at=now, name=p["name"], source="chat")
    expires = date.fromisoformat(p["expires_at"])
    g.name, g.owner_id, g.unit, g.category, g.temporary, g.expires_at = (
        p["name"], p["owner"], p.get("unit"), "临时群", True, expires)
    g.purpose = f"{p['name']}（机器人建群）"
    g.registered_at, g.registered_by, g.updated_at, g.first_seen_at = now, p["owner"], now, now
    g.activity_source = activity
    members = [p["owner"], *[m["person_id"] for m in p["members"]]]
    repo.add_members(session, gid, members, now)
    req.status, req.finished_at, req.result, req.last_error = "done", now, gid, None
    audit.record(session, actor=p["owner"], action="create_group", at=now, group_id=gid,
                 reason=f"建群：{p['name']}", data={"platform": req.platform, "chat_id": chat_id,
                                                   "request": req.id, "members": len(members),
                                                   "expires_at": p["expires_at"], "temporary": True})
    names = "、".join(m["name"] for m in p["members"]) or "暂无其他成员"
    notify(session, person_id=p["owner"], kind="group_created", group_id=gid, at=now, urgent=True,
           dedupe_key=f"group-created:{req.id}",
           text=(f"已在{labels.label('platform', req.platform)}建群“{p['name']}”，您是群主；成员：{names}。"
                 f"已登记为临时群，{fmt_date(expires, now.astimezone(settings.tz).date())}到期；"
                 f"任务结束后（到期或回复“完成 {p['name']}”），机器人会先提醒，再自动解散这个群。"))
    return g


def refused(session: Session, request_id: int, error: str, now: datetime, *, reason: str) -> bool:
    """The platform refused (or kept failing): nothing registered, the person told ``reason``."""
    req = _locked(session, request_id)
    if req is None or req.status not in ("running", "pending"):
        return False
    p = req.payload
    req.status, req.finished_at, req.last_error = "failed", now, error[:500]
    audit.record(session, actor="system:platform", action="create_failed", at=now, group_id=None,
                 reason=f"建群失败：{p['name']}", data={"platform": req.platform, "request": req.id,
                                                      "error": error[:300]})
    notify(session, person_id=req.person_id, kind="group_create_failed", at=now, urgent=True,
           dedupe_key=f"group-create-failed:{req.id}",
           text=f"没能建群“{p['name']}”：{reason}。没有登记任何群，可以稍后再发一次“建群”。")
    return True


def retry_later(session: Session, request_id: int, error: str, now: datetime) -> str:
    """A transient failure: pending again after a back-off, or refused after ``MAX_ATTEMPTS``.
    Returns the new status."""
    req = _locked(session, request_id)
    if req is None or req.status != "running":
        return req.status if req is not None else "missing"
    if (req.attempts or 0) >= MAX_ATTEMPTS:
        refused(session, request_id, error, now, reason=f"平台多次暂时不可用（已试{req.attempts}次）")
        return "failed"
    req.status, req.last_error = "pending", error[:500]
    req.next_attempt_at = now + BACKOFF * (2 ** ((req.attempts or 1) - 1))
    return "pending"


def recover(session: Session, now: datetime, *, stuck_after: timedelta = STUCK_AFTER) -> int:
    """Requests a dead process left ``running``: ``uncertain`` (the platform may have created the
    group; never asked again), the person and the administrators told. Returns how many."""
    stuck = list(session.execute(select(PlatformRequest).where(
        PlatformRequest.status == "running", PlatformRequest.started_at < now - stuck_after)).scalars())
    admins = list(session.execute(select(Person.id).where(Person.role == "admin").order_by(Person.id)).scalars())
    for req in stuck:
        name = req.payload.get("name", "")
        req.status, req.finished_at = "uncertain", now
        req.last_error = "进程在调用平台时中断，建群结果不明"
        audit.record(session, actor="system:platform", action="create_uncertain", at=now, group_id=None,
                     reason=f"建群结果不明：{name}", data={"platform": req.platform, "request": req.id})
        for pid in dict.fromkeys([req.person_id, *admins]):
            notify(session, person_id=pid, kind="group_create_uncertain", at=now, urgent=True,
                   dedupe_key=f"group-create-uncertain:{req.id}:{pid}"[:200],
                   text=(f"建群“{name}”时服务中断，不确定{labels.label('platform', req.platform)}上是否已建好。"
                         f"请在平台上查看：已建好的群可在群里发送“报备”登记；没有的话请重新发“建群”。"))
    return len(stuck)


def _locked(session: Session, request_id: int) -> PlatformRequest | None:
    stmt = select(PlatformRequest).where(PlatformRequest.id == request_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()


__all__ = ["CREATE_GROUP", "MAX_ATTEMPTS", "Member", "claim", "created", "get", "group_id_for", "recover",
           "refused", "request_group", "retry_later"]
