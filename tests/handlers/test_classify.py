"""An event is classified once (``handlers.classify``): dispatch, the stored dedupe key and the
writer's plan read the same classification, and nothing matches the text again downstream."""
from __future__ import annotations

import pytest

from governance.events import Event
from handlers.dispatch import handle_event, plan, stored_key
from storage.models import Person
from tests.factories import message


@pytest.fixture
def matches(monkeypatch):
    """Counts the texts parsed (the real parser still answers)."""
    import nlu

    seen: list[str] = []
    real = nlu.parse

    def counting(text, **kw):
        seen.append(text)
        return real(text, **kw)

    monkeypatch.setattr(nlu, "parse", counting)
    return seen


def _people(runtime, clock):
    with runtime.db.session() as s:
        s.add(Person(id="zhang", unit="城关镇", role="cadre", created_at=clock()))


EVENTS = {
    "command": dict(text="我的群"),
    "command in a group": dict(text="@群治 续期 30天", group="wrk1"),
    "anonymous command": dict(text="这个群没用 秋粮群"),
    "hint": dict(text="今天天气不错"),
    "plain group message": dict(text="收到", group="wrk1", mentioned=False),
}


@pytest.mark.parametrize("name", list(EVENTS))
def test_an_event_is_matched_once(runtime, clock, matches, name):
    _people(runtime, clock)
    ev = message("zhang", at=clock(), **EVENTS[name])
    with runtime.db.session() as s:
        handle_event(s, ev, runtime.services)
    assert len(matches) == (0 if name == "plain group message" else 1), matches


@pytest.mark.parametrize("name", list(EVENTS))
def test_the_writer_plan_is_the_classification_dispatch_uses(runtime, clock, matches, name):
    _people(runtime, clock)
    ev = message("zhang", at=clock(), **EVENTS[name])
    p = plan(ev, runtime.services)
    with runtime.db.session() as s:
        handle_event(s, ev, runtime.services, p.classified)
    assert len(matches) == (0 if name == "plain group message" else 1), matches


@pytest.mark.parametrize("ev", [
    message("zhang", "我的群", None, msg_id="k1"),
    message("zhang", "反映 每天都要求上传照片", None, msg_id="k2"),
    Event(platform="wecom", kind="card_click", sender_id="zhang", at=None, msg_id="k3", data={"card_kind": "pulse"}),
    Event(platform="wecom", kind="card_click", sender_id="zhang", at=None, msg_id="k4", data={"card_kind": "protect"}),
], ids=["command", "anonymous", "anonymous card", "card"])
def test_the_runtime_remembers_replies_under_the_planned_key(runtime, ev):
    key = stored_key(ev, runtime.services)
    assert key == plan(ev, runtime.services).key
    # an anonymous command and every card click are stored under a keyed hash that names nobody
    assert key.startswith("anon:") == (ev.kind == "card_click" or ev.text.startswith("反映"))
