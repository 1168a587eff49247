from dataclasses import replace
from datetime import date, timedelta

import pytest

from governance.lifecycle import (ACTIONS, STATES, TRANSITIONS, GroupState, LifecycleError, allowed, mark_warning_sent,
                                  next_step, transition)
from governance.model import Params

from .factory import NOW, group

D = timedelta(days=1)
P = Params()


def warned_and_sent(sent_at=NOW - 7 * D):
    s = transition(GroupState(), "warn", sent_at - timedelta(hours=1), P)
    return mark_warning_sent(s, sent_at)


def test_full_path_warn_dissolve_restore():
    s = transition(GroupState(), "warn", NOW, P)
    assert s.status == "warned" and s.warned_at == NOW and s.warning_sent_at is None
    s = mark_warning_sent(s, NOW + timedelta(minutes=3))
    s = transition(s, "dissolve", NOW + timedelta(minutes=3) + 7 * D, P, method="bridge")
    assert (s.status, s.dissolve_method, s.final_status, s.dissolved_at) == ("dissolving", "bridge", "dissolved", None)
    s = transition(s, "finish", NOW + timedelta(minutes=3) + 7 * D, P)
    assert s.status == "dissolved" and s.dissolved_at == NOW + timedelta(minutes=3) + 7 * D
    s = transition(s, "restore", s.dissolved_at + 29 * D, P)
    assert s.status == "active" and s.dissolved_at is None and s.warned_at is None


def test_dissolve_needs_sent_warning_and_grace():
    s = transition(GroupState(), "warn", NOW - 10 * D, P)
    with pytest.raises(LifecycleError, match="提醒尚未送达"):
        transition(s, "dissolve", NOW, P)
    s = mark_warning_sent(s, NOW - 7 * D + timedelta(seconds=1))
    with pytest.raises(LifecycleError, match="需等待7天"):
        transition(s, "dissolve", NOW, P)
    assert transition(warned_and_sent(NOW - 7 * D), "dissolve", NOW, P, method="appchat").status == "dissolving"


def test_dissolve_only_from_warned():
    with pytest.raises(LifecycleError, match="当前状态为“正常”，不能解散"):
        transition(GroupState(), "dissolve", NOW, P)


def test_keep_and_veto():
    s = transition(warned_and_sent(), "keep", NOW, P)
    assert (s.status, s.kept_until, s.keep_count, s.warning_sent_at) == ("active", NOW + 90 * D, 1, None)
    s = transition(s, "veto", NOW + D, P)
    assert s.keep_count == 2 and s.kept_until == NOW + 91 * D


def test_renew_sets_expiry():
    s = transition(warned_and_sent(), "renew", NOW, P, expires_at=date(2024, 12, 31))
    assert s.status == "active" and s.expires_at == date(2024, 12, 31)
    assert transition(s, "renew", NOW, P).expires_at == date(2024, 12, 31)


def dissolved(at=NOW, method="order"):
    s = transition(warned_and_sent(at - 7 * D), "dissolve", at, P, method=method)
    return transition(s, "finish", at, P)


def test_purge_after_restore_window_only():
    s = dissolved()
    with pytest.raises(LifecycleError, match="恢复期内"):
        transition(s, "purge", NOW + 30 * D - timedelta(seconds=1), P)
    with pytest.raises(LifecycleError, match="已超过30天恢复期"):
        transition(s, "restore", NOW + 30 * D, P)
    p = transition(s, "purge", NOW + 30 * D, P)
    assert p.status == "purged"
    for action in ("restore", "warn", "keep", "renew", "dissolve", "merge", "purge"):
        with pytest.raises(LifecycleError):
            transition(p, action, NOW + 31 * D, P)


def test_merge_and_final_state():
    m = transition(GroupState(), "merge", NOW, P, merged_into="g9", method="appchat")
    assert (m.status, m.merged_into, m.final_status) == ("dissolving", "g9", "merged")
    m = transition(m, "finish", NOW, P)
    assert m.status == "merged" and m.merged_into == "g9"
    assert transition(warned_and_sent(), "merge", NOW, P, method="order").status == "dissolving"
    with pytest.raises(LifecycleError):
        transition(m, "restore", NOW, P)


def test_protected_cannot_be_warned_dissolved_or_merged():
    prot = GroupState(protected=True)
    for action in ("warn", "merge"):
        with pytest.raises(LifecycleError, match="受保护群不能"):
            transition(prot, action, NOW, P, method="order")
    with pytest.raises(LifecycleError, match="受保护群不能解散"):
        transition(GroupState(status="warned", protected=True, warning_sent_at=NOW - 30 * D), "dissolve", NOW, P,
                   method="order")
    assert transition(prot, "keep", NOW, P).status == "active"


@pytest.mark.parametrize(
    "status,action",
    [("active", "restore"), ("active", "purge"), ("warned", "warn"), ("warned", "restore"),
     ("dissolved", "warn"), ("dissolved", "dissolve"), ("dissolved", "keep"), ("merged", "warn")],
)
def test_illegal_moves(status, action):
    with pytest.raises(LifecycleError):
        transition(GroupState(status=status, dissolved_at=NOW - D), action, NOW, P)


def test_unknown_action_and_sent_on_active():
    with pytest.raises(LifecycleError, match="未知操作"):
        transition(GroupState(), "explode", NOW, P)
    with pytest.raises(LifecycleError):
        mark_warning_sent(GroupState(), NOW)


def test_warning_sent_once():
    s = transition(GroupState(), "warn", NOW, P)
    s = transition(s, "warning_sent", NOW + D, P)
    assert s.warning_sent_at == NOW + D
    with pytest.raises(LifecycleError, match="提醒已送达"):
        transition(s, "warning_sent", NOW + 2 * D, P)


def test_order_deadline_fallback_and_escalation():
    s = transition(warned_and_sent(), "dissolve", NOW, P, method="order")
    assert s.order_deadline == NOW + 3 * D
    with pytest.raises(LifecycleError, match="尚未逾期"):
        transition(s, "escalate", NOW + 3 * D - timedelta(seconds=1), P)
    e = transition(s, "escalate", NOW + 3 * D, P)
    assert e.escalated and e.status == "dissolving"
    with pytest.raises(LifecycleError, match="已上报过"):
        transition(e, "escalate", NOW + 4 * D, P)
    with pytest.raises(LifecycleError):  # an order cannot fall back any further
        transition(s, "dissolve_fallback", NOW, P)
    a = transition(warned_and_sent(), "dissolve", NOW, P, method="appchat")
    assert a.order_deadline is None
    f = transition(a, "dissolve_fallback", NOW + D, P)
    assert (f.status, f.dissolve_method, f.order_deadline) == ("dissolving", "order", NOW + 4 * D)


def test_restore_while_dissolving_cancels_or_undoes():
    a = transition(warned_and_sent(), "dissolve", NOW, P, method="appchat")
    c = transition(replace(a, steps_done=("notice",)), "restore", NOW + D, P)
    assert (c.status, c.warned_at, c.kept_until) == ("active", None, NOW + 91 * D)
    r = transition(replace(a, steps_done=("notice", "remove")), "restore", NOW + D, P)
    assert (r.status, r.kept_until) == ("restoring", NOW + 91 * D)
    assert transition(r, "restore_done", NOW + D, P).status == "active"
    o = transition(warned_and_sent(), "dissolve", NOW, P, method="order")
    assert transition(o, "restore", NOW + 40 * D, P).order_deadline is None  # no restore window while dissolving


def test_restore_of_a_dissolved_appchat_group_goes_through_restoring():
    d = dissolved(method="appchat")
    r = transition(d, "restore", NOW + D, P)
    assert (r.status, r.dissolved_at) == ("restoring", NOW)
    done = transition(r, "restore_done", NOW + D, P)
    assert (done.status, done.dissolved_at) == ("active", None)
    b = transition(dissolved(method="bridge"), "restore", NOW + D, P)
    assert (b.status, b.dissolved_at) == ("active", None)


def test_protect_withdraws_a_warning_and_is_refused_mid_dissolution():
    p = transition(warned_and_sent(), "protect", NOW, P)
    assert (p.status, p.protected, p.warned_at, p.warning_sent_at) == ("active", True, None, None)
    assert transition(p, "unprotect", NOW, P).protected is False
    for status in ("dissolving", "restoring"):
        with pytest.raises(LifecycleError, match="正在解散或恢复中，请先回复“恢复 防汛群”"):
            transition(GroupState(status=status, name="防汛群"), "protect", NOW, P)
        assert transition(GroupState(status=status, protected=True), "unprotect", NOW, P).protected is False


def _ready(status: str, action: str) -> GroupState:
    """A state in ``status`` that meets every guard of ``action``."""
    base = dict(status=status, dissolved_at=NOW - 31 * D if status == "dissolved" else None)
    if action == "restore" and status == "dissolved":
        base["dissolved_at"] = NOW - D
    if status == "warned":
        base.update(warned_at=NOW - 9 * D, warning_sent_at=None if action == "warning_sent" else NOW - 8 * D)
    if status == "dissolving":
        base.update(dissolve_method="order" if action == "escalate" else "appchat",
                    order_deadline=NOW - D if action == "escalate" else None, final_status="dissolved")
    return GroupState(**base)


@pytest.mark.parametrize("status,action", sorted(TRANSITIONS))
def test_every_allowed_transition(status, action):
    state = _ready(status, action)
    assert allowed(state, action)
    new = transition(state, action, NOW, P, method="appchat", merged_into="g9")
    assert new.status in TRANSITIONS[(status, action)]


@pytest.mark.parametrize("status,action", sorted((s, a) for s in STATES for a in ACTIONS if (s, a) not in TRANSITIONS))
def test_every_other_transition_is_refused(status, action):
    state = _ready(status, action)
    assert not allowed(state, action)
    with pytest.raises(LifecycleError):
        transition(state, action, NOW, P, method="appchat", merged_into="g9")


def test_every_action_and_state_has_a_label():
    from governance import labels

    assert all(labels.action(a) != labels.UNKNOWN["action"] for a in ACTIONS)
    assert all(labels.status(s) != labels.UNKNOWN["status"] for s in STATES)


# --- next_step ----------------------------------------------------------------

def test_next_step_warn_then_dissolve():
    g = group(status="active")
    assert next_step(g, None, {"zombie"}, NOW, P) == "warn"
    assert next_step(g, None, set(), NOW, P) is None
    assert next_step(g, None, {"unregistered", "overloaded_member"}, NOW, P) is None
    w = group(status="warned")
    assert next_step(w, None, {"zombie"}, NOW, P) is None  # warning not sent yet
    assert next_step(w, NOW - 7 * D + timedelta(seconds=1), {"zombie"}, NOW, P) is None
    assert next_step(w, NOW - 7 * D, {"zombie"}, NOW, P) == "dissolve"
    assert next_step(w, NOW - 7 * D, {"expired"}, NOW, P) == "dissolve"
    assert next_step(w, NOW - 7 * D, {"duplicate"}, NOW, P) is None  # merge is a person's call
    assert next_step(w, NOW - 7 * D, set(), NOW, P) is None


def test_next_step_protected_kept_and_purge():
    assert next_step(group(protected=True), None, {"zombie", "expired"}, NOW, P) is None
    kept = group(kept_until=NOW + D)
    assert next_step(kept, None, {"zombie", "duplicate"}, NOW, P) is None
    assert next_step(kept, None, {"expired"}, NOW, P) == "warn"
    d = group(status="dissolved", dissolved_at=NOW - 30 * D)
    assert next_step(d, None, set(), NOW, P) == "purge"
    d = group(status="dissolved", dissolved_at=NOW - 29 * D)
    assert next_step(d, None, set(), NOW, P) is None
    assert next_step(group(status="merged"), None, {"zombie"}, NOW, P) is None
