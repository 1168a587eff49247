"""看板: a commission member or administrator gets a one-time dashboard link (15 minutes)."""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from handlers.context import Context
from governance.events import Reply
from handlers.permissions import ADMIN, COMMISSION
from handlers.registry import command
from storage.models import LoginToken, Person

LINK_MINUTES = 15
DASHBOARD_ROLES = ("commission", "admin")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_link(session: Session, person: Person, now: datetime, base_url: str) -> str | None:
    """A one-time login link (only its hash is stored); None for people without the role."""
    if person.role not in DASHBOARD_ROLES:
        return None
    token = secrets.token_urlsafe(32)
    session.add(LoginToken(token_hash=token_hash(token), kind="link", person_id=person.id, role=person.role,
                           created_at=now, expires_at=now + timedelta(minutes=LINK_MINUTES)))
    session.flush()
    return f"{base_url.rstrip('/')}/dashboard/login/{token}"


@command("看板", "治理看板", summary=f"获取看板登录链接，{LINK_MINUTES}分钟内有效", permission=COMMISSION | ADMIN,
         refusal="抱歉，看板只向纪委监委和管理员开放。您可以发“我的群”查看自己的群。",
         in_group=False, private_reply="登录链接只在与我的单聊中发送，请单独给我发“看板”。")
def dashboard_link(ctx: Context, args: str) -> Reply:
    url = issue_link(ctx.session, ctx.person, ctx.now, ctx.settings.public_base_url)
    return Reply(f"看板登录链接（{LINK_MINUTES}分钟内有效，只能用一次，请勿转发）：\n{url}")
