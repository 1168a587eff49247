from datetime import date, timedelta

import pytest

from governance.lifecycle import GroupState, LifecycleError, mark_warning_sent, next_step, transition
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
    s = transition(s, "dissolve", NOW + timedelta(minutes=3) + 7 * D, P)
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
    assert transition(warned_and_sent(NOW - 7 * D), "dissolve", NOW, P).status == "dissolved"


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


def test_purge_after_restore_window_only():
    s = transition(warned_and_sent(NOW - 7 * D), "dissolve", NOW, P)
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
    m = transition(GroupState(), "merge", NOW, P, merged_into="g9")
    assert m.status == "merged" and m.merged_into == "g9"
    assert transition(warned_and_sent(), "merge", NOW, P).status == "merged"
    with pytest.raises(LifecycleError):
        transition(m, "restore", NOW, P)


def test_protected_cannot_be_warned_dissolved_or_merged():
    prot = GroupState(protected=True)
    for action in ("warn", "merge"):
        with pytest.raises(LifecycleError, match="受保护群不能"):
            transition(prot, action, NOW, P)
    with pytest.raises(LifecycleError, match="受保护群不能解散"):
        transition(GroupState(status="warned", protected=True, warning_sent_at=NOW - 30 * D), "dissolve", NOW, P)
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
