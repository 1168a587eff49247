"""看板: a commission member or administrator gets a one-time dashboard link (15 minutes)."""
from __future__ import annotations

from handlers.context import Context
from governance.events import Reply
from handlers.permissions import ADMIN, COMMISSION
from handlers.registry import command
from storage.logins import LINK_MINUTES, issue_link


@command("看板", "治理看板", summary=f"获取看板登录链接，{LINK_MINUTES}分钟内有效", permission=COMMISSION | ADMIN, intent="dashboard",
         refusal="抱歉，看板只向纪委监委和管理员开放。您可以发“我的群”查看自己的群。",
         in_group=False, private_reply="登录链接只在与我的单聊中发送，请单独给我发“看板”。")
def dashboard_link(ctx: Context, args: str) -> Reply:
    url = issue_link(ctx.session, ctx.person, ctx.now, ctx.settings.public_base_url)
    return Reply(f"看板登录链接（{LINK_MINUTES}分钟内有效，只能用一次，请勿转发）：\n{url}")
