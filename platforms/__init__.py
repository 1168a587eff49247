"""One folder per platform (wecom, aibot, bridge, local): inbound (verify, parse to the neutral
``governance.events.Event``, render ``Reply``), outbound sender, capabilities (``platforms.capabilities``: what each platform lets the bot do to
a group, handed to storage as plain data). Shared parts:
``platforms.base`` (the sender protocol and its errors), ``platforms.common`` (inbound validation),
``platforms.http`` (pooled HTTP)."""
