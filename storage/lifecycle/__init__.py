"""The group lifecycle with I/O, by job:

* :mod:`.facts`: loading every group's ``GroupFacts`` in bulk (memberships streamed once), the
  parameters, ``--as-of``;
* :mod:`.findings`: computing the findings, persisting them by key, refreshing a few groups
  after a command;
* :mod:`.texts`: the Chinese texts the lifecycle sends (pure);
* :mod:`.transitions`: warn, keep, renew, restore, merge, protect, begin and finish a
  dissolution, and recording the outcome of the platform steps, each through the pure state
  machine ``governance.lifecycle`` with an audit record;
* :mod:`.sweep`: the plan, the sweep's lock and its database steps.

Storage never calls a platform: the appchat steps (remove members, rename, post a notice) are
taken by ``scheduler.lifecycle`` through the platform's sender, which reports each outcome back
(:func:`record_platform_step`, :func:`record_platform_error`, :func:`finish_platform_work`).
How a group can be dissolved is plain data the caller passes in (``capabilities``: platform →
``governance.capabilities.Capabilities`` of the platforms configured here, built by
``platforms.capabilities.table``).
``--as-of DATE`` means the end of that day in ``QUNZHI_TIMEZONE`` (see :func:`as_of`).
"""
from storage.lifecycle.facts import Facts, as_of, load_facts, params_from
from storage.lifecycle.findings import (
    OWN_CONDITION_KINDS, compute_findings, findings_computed_at, groups_changed, refresh_findings,
    refresh_group_findings,
)
from storage.lifecycle.sweep import (
    SWEEP_LOCK_KEY, Step, SweepReport, SweepRun, apply_step, apply_sweep, finish_sweep, plan, preview_sweep, sweep_lock,
)
from storage.lifecycle.transitions import (
    PlatformWork, begin_dissolution, confirm_bridge_dissolution, confirm_order, finish_platform_work, keep_group,
    mark_done, mark_warning_sent, merge_group, pending_platform_groups, platform_work, record_platform_error,
    record_platform_step, renew_group, restore_group, set_protected, undo_last,
)

__all__ = [
    "Facts", "as_of", "load_facts", "params_from",
    "OWN_CONDITION_KINDS", "compute_findings", "findings_computed_at", "groups_changed", "refresh_findings",
    "refresh_group_findings",
    "SWEEP_LOCK_KEY", "Step", "SweepReport", "SweepRun", "apply_step", "apply_sweep", "finish_sweep", "plan",
    "preview_sweep", "sweep_lock",
    "PlatformWork", "begin_dissolution", "confirm_bridge_dissolution", "confirm_order", "finish_platform_work",
    "keep_group", "mark_done", "mark_warning_sent", "merge_group", "pending_platform_groups", "platform_work",
    "record_platform_error", "record_platform_step", "renew_group", "restore_group", "set_protected", "undo_last",
]
