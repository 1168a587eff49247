"""One folder per platform (wecom, aibot, bridge, local): its ``__init__`` defines ``platform``
(``platforms.base.Platform``: channels, capabilities, sender factory, reply deadline, start-up line),
``inbound`` (verify, parse to the neutral ``governance.events.Event``, render ``Reply``), the outbound
sender. The list of platforms: ``platforms.registry``. Shared parts: ``platforms.base`` (the
protocols, the sender errors, ``DeadlineMissed``), ``platforms.common`` (inbound validation),
``platforms.http`` (pooled HTTP), ``platforms.pages`` (what the HTML pages share); ``platforms.capabilities`` (what each platform can
do to a group, handed to storage as plain data)."""
