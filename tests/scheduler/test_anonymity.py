"""Anonymity of 这个群没用 and the pulse: who may vote, what a vote may touch, what a count may show."""
from datetime import timedelta

from sqlalchemy import select

from handlers.events import Event
from storage import repo
from storage.models import Conversation, FindingRecord, Notice, OutboxMessage, PulseAsk, PulseResponse, UselessVote


def ev(clock, sender, text_="", group=None, kind="message", msg=None, **data):
    return Event(platform="wecom", kind=kind, sender_id=sender, at=clock(), text=text_, group_id=group,
                 msg_id=msg or f"{sender}-{text_}-{clock().timestamp()}-{kind}-{group}", mentioned_bot=bool(group),
                 data=data)


def _group(runtime, clock, gid="g1", name="招商引资信息群", members=("a", "b", "c", "d", "e", "f", "g", "h", "i")):
    with runtime.db.session() as s:
        g = repo.ensure_group(s, group_id=gid, platform="wecom", at=clock(), name=name)
        g.owner_id = "owner"
        if members:
            repo.add_members(s, gid, members, clock())


def _votes(runtime) -> int:
    with runtime.db.session() as s:
        return len(s.execute(select(UselessVote)).scalars().all())


def _card_updates(runtime) -> list[str]:
    with runtime.db.session() as s:
        return [m.payload["card"]["replace_name"] for m in s.execute(
            select(OutboxMessage).where(OutboxMessage.channel == "card_update")).scalars()]


def test_an_anonymous_command_leaves_the_senders_dialogue_alone(runtime, clock):
    _group(runtime, clock, members=("a", "b", "voter"))
    assert runtime.process(ev(clock, "voter", "报备"))[0].text == "好的，请告诉我群名称。"
    with runtime.db.session() as s:
        before = (lambda c: (c.intent, c.data, c.updated_at))(s.get(Conversation, "voter"))
    assert "匿名" in runtime.process(ev(clock, "voter", "这个群没用 招商引资信息群"))[0].text
    clock.advance(hours=13)  # an expired dialogue is not cleaned up by an anonymous command either
    with runtime.db.session() as s:
        s.add(PulseAsk(person_id="voter", asked_at=clock()))
    assert runtime.process(ev(clock, "voter", "3"))[0].text == "收到，谢谢。"
    with runtime.db.session() as s:
        c = s.get(Conversation, "voter")
        assert c is not None and (c.intent, c.data, c.updated_at) == before
        assert len(s.execute(select(PulseResponse)).scalars().all()) == 1
    assert _votes(runtime) == 1


def test_a_refused_card_vote_is_not_acknowledged_as_received(runtime, clock):
    _group(runtime, clock, members=("a", "b", "c"))
    out = runtime.process(ev(clock, "outsider", kind="card_click", card_kind="useless", event_key="useless:g1",
                             response_code="RC1"))
    assert _votes(runtime) == 0
    assert all("已收到" not in t for t in _card_updates(runtime))
    assert out and "成员" in out[0].text and "未记录" in out[0].text
    # a second tap by a member who already voted: not counted, not "received" either
    runtime.process(ev(clock, "a", kind="card_click", card_kind="useless", event_key="useless:g1",
                       response_code="RC2"))
    runtime.process(ev(clock, "a", kind="card_click", card_kind="useless", event_key="useless:g1",
                       response_code="RC3", msg="again"))
    assert _votes(runtime) == 1
    assert _card_updates(runtime).count("已收到，谢谢（匿名）") == 1
    # the pulse: a second tap the same week is not "received"
    for code in ("P1", "P2"):
        runtime.process(ev(clock, "a", kind="card_click", card_kind="pulse", event_key="pulse:3", response_code=code,
                           msg=code))
    assert _card_updates(runtime).count("已收到，谢谢（匿名）") == 2


def test_refused_text_vote_says_nothing_was_recorded(runtime, clock):
    _group(runtime, clock, members=("a", "b", "c"))
    reply = runtime.process(ev(clock, "outsider", "这个群没用 招商引资信息群"))[0].text
    assert "成员" in reply and "未记录" in reply and "已匿名记录" not in reply
    assert _votes(runtime) == 0


def test_unknown_member_list_accepts_only_people_seen_in_the_group(runtime, clock):
    _group(runtime, clock, gid="g2", name="无名单群", members=())
    with runtime.db.session() as s:
        repo.record_message(s, dedupe_key="old-1", platform="wecom", group_id="g2", sender_id="seen",
                            sent_at=clock() - timedelta(days=3), is_ritual=False, text=None)
        assert repo.member_ids(s, "g2") == set() or not repo.member_ids(s, "g2")
    reply = runtime.process(ev(clock, "stranger", "这个群没用 无名单群"))[0].text
    assert "未记录" in reply and _votes(runtime) == 0
    assert "已匿名记录" in runtime.process(ev(clock, "seen", "这个群没用 无名单群"))[0].text
    assert _votes(runtime) == 1
    # said inside the group, the platform vouches for the sender being there
    assert "已匿名记录" in runtime.process(ev(clock, "inside", "这个群没用", group="g2"))[0].text
    assert _votes(runtime) == 2


def test_review_below_five_votes_shows_no_count(runtime, clock):
    _group(runtime, clock)
    for who in "abc":
        runtime.process(ev(clock, who, "这个群没用 招商引资信息群"))
    with runtime.db.session() as s:
        n = s.execute(select(Notice).where(Notice.kind == "useless_review")).scalar_one()
        assert n.person_id == "owner" and "有成员匿名认为" in n.text
        assert not any(ch.isdigit() for ch in n.text)
        f = s.execute(select(FindingRecord).where(FindingRecord.kind == "useless")).scalar_one()
        assert f.score == 0 and "3" not in "".join(f.reasons)
        assert "不足5票" in "".join(f.reasons)
    for who in "de":
        runtime.process(ev(clock, who, "这个群没用 招商引资信息群"))
    with runtime.db.session() as s:
        f = s.execute(select(FindingRecord).where(FindingRecord.kind == "useless")).scalar_one()
        assert f.score == 5 and "5位成员" in "".join(f.reasons)
