"""A batch as ``storage.ingest.store`` takes it, and what it did with it."""
from __future__ import annotations

from dataclasses import dataclass, field

from governance.events import Event

NEW = "new"          # stored now
REPEAT = "repeat"    # its key was claimed before (or earlier in the batch): nothing stored
FOREIGN = "foreign"  # names a group stored under a platform it may not touch: claimed, nothing else stored


@dataclass(frozen=True, slots=True)
class Item:
    event: Event
    key: str | None = None  # the dedupe key to claim in processed_events (None: claims nothing)
    hint: bool = False      # a message to the bot matching no command: its sender's dialogue cuts the batch


@dataclass(slots=True)
class Stored:
    """What ``store`` did with the leading ``len(outcomes)`` items of the batch (the rest, from a
    dialogue's next answer on, it left alone): per item ``NEW``, ``REPEAT`` or ``FOREIGN``, and for
    each repeat (by index) the reply payloads its first attempt stored (None: none)."""

    outcomes: list[str]
    replies: dict[int, list | None] = field(default_factory=dict)

    @property
    def taken(self) -> int:
        return len(self.outcomes)
