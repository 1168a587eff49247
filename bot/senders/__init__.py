"""Outbound senders: how the outbox dispatcher reaches WeCom (``WeComSender``), a bridge
(``BridgeSender``), or memory (``RecordingSender``, for the demo and job tests)."""
from bot.senders.base import PermanentSendError, SendError, SendResult, Sender, TransientSendError

__all__ = ["PermanentSendError", "SendError", "SendResult", "Sender", "TransientSendError"]
