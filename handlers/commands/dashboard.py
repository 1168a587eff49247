"""看板: a commission member or administrator gets a one-time dashboard link (15 minutes)."""
from __future__ import annotations

from handlers.context import Context
from governance.events import Reply
from handlers.registry import command
from storage.logins import LINK_MINUTES, issue_link


@command("看板", "治理看板", summary="纪委监委：获取看板登录链接", in_group=False)
def dashboard_link(ctx: Context, args: str) -> Reply:
    if not ctx.is_commission():
        return Reply("抱歉，看板只向纪委监委和管理员开放。您可以发“我的群”查看自己的群。")
    if not ctx.event.is_direct:
        return Reply("登录链接只在与我的单聊中发送，请单独给我发“看板”。")
    url = issue_link(ctx.session, ctx.person, ctx.now, ctx.settings.public_base_url)
    return Reply(f"看板登录链接（{LINK_MINUTES}分钟内有效，只能用一次，请勿转发）：\n{url}")
