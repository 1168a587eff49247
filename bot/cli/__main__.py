"""``python -m bot.cli``: the same CLI as the ``qunzhi`` command."""
from bot.cli import app

app()
