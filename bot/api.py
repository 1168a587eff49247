"""Read access for operators: ``GET /api/groups`` (Bearer ADMIN_TOKEN, ``auth.admin_token``)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from bot.dashboard import auth
from storage import dashboard as queries

router = APIRouter()


def group_json(g) -> dict:
    last = max((t for t in (g.last_message_at, g.last_work_at) if t), default=None)
    return {
        "group_id": g.id, "name": g.name, "platform": g.platform, "owner": g.owner_id, "unit": g.unit,
        "category": g.category, "purpose": g.purpose, "protected": g.protected, "registered": g.registered_at is not None,
        "status": g.status, "expires_at": g.expires_at.isoformat() if g.expires_at else None,
        "member_count": g.member_count, "last_activity": last.isoformat() if last else None,
        "last_work_at": g.last_work_at.isoformat() if g.last_work_at else None,
    }


@router.get("/api/groups", dependencies=[Depends(auth.admin_token)])
def list_groups(s: auth.DB, unit: str | None = None, status: str | None = None,
                q: str | None = Query(None, max_length=100), limit: int = Query(1000, ge=1, le=10000),
                offset: int = Query(0, ge=0, le=2**31 - 1)) -> dict:
    """The ledger (台账) as JSON."""
    total, rows = queries.groups_page(s, unit=unit, status=status, q=q, limit=limit, offset=offset)
    return {"total": total, "groups": [group_json(g) for g in rows]}
