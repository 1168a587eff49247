"""Every chat command, one module each. Importing this package registers them all."""
from handlers.commands import dashboard, feedback, help, lifecycle, mine, register, renew_done  # noqa: F401
