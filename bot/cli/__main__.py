"""``python -m bot.cli``: the ``qunzhi`` command (tests start the server this way)."""
from bot.cli import app

app()
