"""Faults during the purge's disband, against the fake group platform over HTTP: the process dies
right after the platform disbanded the group (before the step was recorded), and the platform is
down for a while. Either way the next run finishes the purge once, nothing is purged twice, the
audit chain verifies."""
from __future__ import annotations

from datetime import timedelta

import pytest

from scheduler.lifecycle import advance_pending, group_senders, sweep
from storage import audit
from storage.models import Group
from tests.fakes.crashing import CrashAfterSend
from tests.lifecycle.helpers import trail
from tests.lifecycle.test_groupops import GID, _dissolved, _group


class Killed(BaseException):
    """The process dying (not an Exception: nothing on the way may catch it)."""


def test_kill_right_after_the_disband_finishes_on_the_next_run(runtime, group_platform):
    db, settings = runtime.db, runtime.settings
    at = _dissolved(runtime, group_platform)
    real = group_senders(settings)
    dying = {**real, "testgroups": CrashAfterSend(real["testgroups"], Killed)}
    with pytest.raises(Killed):
        sweep(db, at, settings, apply=True, senders=dying)
    assert "c1" not in group_platform.groups  # the platform did it
    g = _group(db)
    assert g.status == "dissolved" and g.dissolve_state["purge"]["done"] == []  # not recorded
    # the every-minute job picks it up: the platform answers "already gone", which counts as done
    steps = advance_pending(db, at + timedelta(minutes=1), settings, senders=real)
    assert [(s.action, s.result) for s in steps] == [("resume", "done")]
    g = _group(db)
    assert (g.status, g.dissolve_state["purge"]["outcome"]) == ("purged", "gone")
    assert len(group_platform.calls_to("DELETE")) == 2
    assert advance_pending(db, at + timedelta(minutes=2), settings, senders=real) == []
    with db.session() as s:
        actions = [a for a, _, _ in trail(s, GID)]
        assert actions.count("purge") == 1 and actions.count("purge_intent") == 1
        assert audit.verify(s).ok


@pytest.mark.parametrize("status", [503, 429])
def test_platform_outage_during_the_purge_retries_until_it_is_back(runtime, group_platform, status):
    db, settings = runtime.db, runtime.settings
    at = _dissolved(runtime, group_platform)
    senders = group_senders(settings)
    group_platform.fail_next(2, status, "busy")
    r = sweep(db, at, settings, apply=True, senders=senders)
    assert [(x.action, x.result) for x in r.steps] == [("purge", "pending"), ("resume", "pending")]
    assert "暂时失败" in r.steps[1].detail
    assert _group(db).status == "dissolved"
    # a second sweep the same day: the purge is not requested again, the disband is retried
    r = sweep(db, at + timedelta(hours=1), settings, apply=True, senders=senders)
    assert _group(db).status == "dissolved" and "c1" in group_platform.groups
    steps = advance_pending(db, at + timedelta(hours=2), settings, senders=senders)
    assert [(s.action, s.result) for s in steps] == [("resume", "done")]
    g = _group(db)
    assert (g.status, g.dissolve_state["purge"]["outcome"]) == ("purged", "disbanded")
    assert "c1" not in group_platform.groups
    with db.session() as s:
        actions = [a for a, _, _ in trail(s, GID)]
        assert actions.count("purge_intent") == 1 and actions.count("purge") == 1
        assert audit.verify(s).ok
        assert s.get(Group, GID).dissolve_state["last_error"].endswith(f"HTTP {status}") or status == 429
