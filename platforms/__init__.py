"""One folder per platform (wecom, aibot, bridge, local): inbound (verify, parse to the neutral
``governance.events.Event``, render ``Reply``), outbound sender. What a platform lets the bot do to a group
(dissolve, remove members, rename) is the pure table ``governance.capabilities``. Shared parts:
``platforms.base`` (the sender protocol and its errors), ``platforms.common`` (inbound validation),
``platforms.http`` (pooled HTTP)."""
