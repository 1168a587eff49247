"""Local mode: a chat page for trying the bot without any platform (development, loopback only)."""
