"""The outbox knows every channel a registered platform delivers (no second list to forget): the
one-sender path of the scheduled jobs routes each of them, and every channel that reaches a person
has a per-recipient limit."""
from __future__ import annotations

from platforms.registry import all_platforms
from scheduler.outbox import PER_RECIPIENT
from scheduler.routing import CHANNELS
from storage.repo import NATIVE_CHANNELS


def test_every_registered_channel_is_routed():
    declared = {c for p in all_platforms() for c in p.channels}
    assert {"dingtalk", "feishu", "user", "bridge"} <= declared
    assert set(CHANNELS) == declared


def test_every_channel_to_a_person_is_rate_limited_per_recipient():
    person_channels = {"user", "aibot", "bridge", *NATIVE_CHANNELS.values()}
    assert "dingtalk" in person_channels
    assert person_channels <= set(PER_RECIPIENT), person_channels - set(PER_RECIPIENT)
