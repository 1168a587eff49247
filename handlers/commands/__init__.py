"""Every chat command, one module each. Importing this package registers them all.

The order of the imports is the order 帮助 lists the commands in (``handlers.commands.help``)."""
from handlers.commands import register  # noqa: F401  (报备)
from handlers.commands import create  # noqa: F401  (建群)
from handlers.commands import mine  # noqa: F401  (我的群)
from handlers.commands import renew_done  # noqa: F401  (续期、完成)
from handlers.commands import lifecycle  # noqa: F401  (保留、恢复、已解散、合并、保护 …)
from handlers.commands import feedback  # noqa: F401  (这个群没用、反映, the pulse)
from handlers.commands import dashboard  # noqa: F401  (看板)
from handlers.commands import talk  # noqa: F401  (撤销; 你好、取消、继续、确认 when nothing is open)
from handlers.commands import help  # noqa: F401  (帮助)
from handlers.commands import reconcile_review  # noqa: F401  (台账核对: 确认 1 / 不是)
