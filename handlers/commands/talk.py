"""The words of a conversation: 你好, 取消, 继续, 确认, a number, and 撤销.

While a question is open, 取消/继续/确认/a number are its answers (``handlers.dialogue``); these
commands answer them when nothing is open, so the person hears that rather than 没听懂."""
from __future__ import annotations

from governance.events import Reply
from governance.lifecycle import UNDO_WINDOW, LifecycleError
from handlers.context import Context
from handlers.registry import command
from storage import lifecycle
from storage.models import Group

GREETING = "您好，我是群治助手。可以说“报备”登记一个群、“我的群”看看您的群，发“帮助”看全部用法。"


@command("你好", intent="greet")
def greet(ctx: Context, args: str) -> Reply:
    return Reply(GREETING)


@command("取消", "算了", intent="cancel")
def cancel(ctx: Context, args: str) -> Reply:
    return Reply("现在没有进行中的操作，不用取消。")


@command("继续", intent="continue")
def resume(ctx: Context, args: str) -> Reply:
    return Reply("现在没有没填完的事。发“帮助”看看我能做什么。")


@command("确认", intent="confirm")
def confirm(ctx: Context, args: str) -> Reply:
    return Reply("现在没有需要您确认的事。")


@command("序号", intent="choose")
def choose(ctx: Context, args: str) -> Reply:
    return Reply("现在没有需要您选择的事。")


@command("撤销", "撤回", summary=f"撤销自己{int(UNDO_WINDOW.total_seconds() // 60)}分钟内的续期、保留或完成",
         intent="undo", example="撤销")
def undo(ctx: Context, args: str) -> Reply:
    try:
        g, action = lifecycle.undo_last(ctx.session, ctx.person.id, ctx.now)
    except LifecycleError as e:
        return Reply(str(e))
    return Reply(_undone(ctx, g, action))


def _undone(ctx: Context, g: Group, action: str) -> str:
    from nlu import say_date

    if action == "renew":
        when = f"，到期日改回{say_date(g.expires_at)}" if g.expires_at else "，恢复为无到期日"
        return f"已撤销对“{g.name}”的续期{when}。"
    if action == "keep":
        return f"已撤销对“{g.name}”的保留。"
    return f"已撤销“{g.name}”的任务完成标记，不会因此解散。"
