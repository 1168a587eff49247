"""帮助: what the bot can do, in a few lines."""
from governance.events import Reply
from handlers.registry import command

HELP = (
    "我是群治助手，帮您管好工作群：\n"
    "· 报备 群名称 用途:… 单位:… 类别:临时群 到期:12月31日（也可只说“报备”，我逐项问）\n"
    "· 我的群：看我建的群和我在的群\n"
    "· 续期 群名 30天 ／ 完成 群名：延长或结束临时群\n"
    "· 保留 群名 理由 ／ 恢复 群名：不同意解散或找回已解散的群\n"
    "· 这个群没用 群名 ／ 反映 内容：匿名反映，不记录身份"
)


@command("帮助", "help", "?", "菜单", summary="看我能做什么")
def help_command(ctx, args: str) -> Reply:
    return Reply(HELP)
