"""Every chat command, one module each. Importing this package registers them all."""
from handlers.commands import help, mine, register, renew_done, feedback  # noqa: F401
from handlers.commands import lifecycle  # noqa: F401
from handlers.commands import dashboard  # noqa: F401
