"""Read access for operators: ``GET /api/groups`` (Bearer ADMIN_TOKEN)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from sqlalchemy import func, select

from bot.dashboard.auth import admin_token_attempt
from storage.models import Group

router = APIRouter()


def require_admin(request: Request, authorization: str | None = Header(default=None)) -> None:
    """Bearer ADMIN_TOKEN, through the same per-address limiter as the dashboard login (429 when locked)."""
    given = (authorization or "").removeprefix("Bearer ").strip() if (authorization or "").startswith("Bearer ") else ""
    if not admin_token_attempt(request.app.state.runtime, request, given, via="api"):
        raise HTTPException(status_code=401, detail="需要管理员令牌（Authorization: Bearer …）",
                            headers={"WWW-Authenticate": "Bearer"})


def group_json(g: Group) -> dict:
    last = max((t for t in (g.last_message_at, g.last_work_at) if t), default=None)
    return {
        "group_id": g.id, "name": g.name, "platform": g.platform, "owner": g.owner_id, "unit": g.unit,
        "category": g.category, "purpose": g.purpose, "protected": g.protected, "registered": g.registered_at is not None,
        "status": g.status, "expires_at": g.expires_at.isoformat() if g.expires_at else None,
        "member_count": g.member_count, "last_activity": last.isoformat() if last else None,
        "last_work_at": g.last_work_at.isoformat() if g.last_work_at else None,
    }


@router.get("/api/groups", dependencies=[Depends(require_admin)])
def list_groups(request: Request, unit: str | None = None, status: str | None = None,
                q: str | None = Query(None, max_length=100), limit: int = Query(1000, ge=1, le=10000),
                offset: int = Query(0, ge=0, le=2**31 - 1)) -> dict:
    """The ledger (台账) as JSON."""
    rt = request.app.state.runtime
    with rt.db.session() as s:
        query = select(Group)
        if unit:
            query = query.where(Group.unit == unit)
        if status:
            query = query.where(Group.status == status)
        if q:
            query = query.where(Group.name.contains(q, autoescape=True))
        total = s.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        rows = s.execute(query.order_by(Group.id).limit(limit).offset(offset)).scalars().all()
        return {"total": total, "groups": [group_json(g) for g in rows]}
