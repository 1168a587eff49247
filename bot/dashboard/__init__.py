"""The dashboard (看板) under /dashboard: see ``bot.dashboard.routes``."""
from bot.dashboard.routes import router

__all__ = ["router"]
