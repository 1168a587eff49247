"""Pulse card clicks, useless-group votes reaching the threshold, anonymity in the database."""
from datetime import timedelta

from sqlalchemy import inspect, select, text

from governance.events import Event
from storage import repo
from dataclasses import dataclass

from sqlalchemy import func, select

from storage.feedback import MIN_RESPONSES
from storage.models import PulseResponse
from storage.models import FindingRecord, Notice, OutboxMessage, Person, PulseAsk, PulseResponse, UselessVote


@dataclass(frozen=True)
class PulseSummary:
    responses: int
    light: float
    moderate: float
    heavy: float


def pulse_summary(session, period: str) -> dict:
    """Per unit for one period (e.g. ``2026-W48``); ``None`` for a unit with fewer than 5 answers."""
    counts: dict[str | None, dict[int, int]] = {}
    for unit, value, n in session.execute(select(PulseResponse.unit, PulseResponse.value, func.count())
                                          .where(PulseResponse.period == period)
                                          .group_by(PulseResponse.unit, PulseResponse.value)):
        counts.setdefault(unit, {})[value] = n
    out: dict[str | None, PulseSummary | None] = {}
    for unit, c in counts.items():
        total = sum(c.values())
        out[unit] = None if total < MIN_RESPONSES else PulseSummary(
            total, c.get(1, 0) / total, c.get(2, 0) / total, c.get(3, 0) / total)
    return out


def ev(clock, sender, text_="", group=None, kind="message", msg=None, **data):
    return Event(platform="wecom", kind=kind, sender_id=sender, at=clock(), text=text_, group_id=group,
                 msg_id=msg or f"{sender}-{text_}-{clock().timestamp()}-{kind}", mentioned_bot=bool(group),
                 data=data)


def _group(runtime, clock, gid="g1", name="招商引资信息群", members=("a", "b", "c", "d", "e", "f", "g", "h", "i")):
    with runtime.db.session() as s:
        g = repo.ensure_group(s, group_id=gid, platform="wecom", at=clock(), name=name)
        g.owner_id = "owner"
        repo.add_members(s, gid, members, clock())


def test_pulse_card_click_recorded_and_card_updated(runtime, clock):
    with runtime.db.session() as s:
        repo.get_or_create_person(s, "wang", clock()).unit = "城关镇"
    replies = runtime.process(ev(clock, "wang", kind="card_click", card_kind="pulse", event_key="pulse:3",
                                 task_id="pulse:abc", response_code="RC123"))
    assert replies == []
    with runtime.db.session() as s:
        r = s.execute(select(PulseResponse)).scalar_one()
        assert r.value == 3 and r.unit == "城关镇" and "wang" not in r.voter_key
        upd = s.execute(select(OutboxMessage).where(OutboxMessage.channel == "card_update")).scalar_one()
        assert upd.payload["response_code"] == "RC123" and "wang" not in str(upd.payload) + upd.recipient
    # a second tap the same week does not count twice
    runtime.process(ev(clock, "wang", kind="card_click", card_kind="pulse", event_key="pulse:1",
                       response_code="RC124", msg="again"))
    with runtime.db.session() as s:
        assert s.execute(select(PulseResponse)).scalars().all().__len__() == 1


def test_pulse_text_fallback_only_after_being_asked(runtime, clock):
    assert "没听懂" in runtime.process(ev(clock, "li", "3"))[0].text
    with runtime.db.session() as s:
        s.add(PulseAsk(person_id="li", asked_at=clock()))
    clock.advance(days=1)
    assert runtime.process(ev(clock, "li", "重"))[0].text == "收到，谢谢。"
    with runtime.db.session() as s:
        assert s.execute(select(PulseResponse.value)).scalar_one() == 3


def test_pulse_summary_needs_five(runtime, clock):
    from storage.feedback import record_pulse

    day = clock().date()
    with runtime.db.session() as s:
        for i in range(5):
            p = repo.get_or_create_person(s, f"p{i}", clock())
            p.unit = "A" if i < 4 else "B"
        s.flush()
        for i in range(5):
            record_pulse(s, secret=b"k", person=s.get(Person, f"p{i}"), value=3, local_day=day)
        for i in range(5, 10):
            p = repo.get_or_create_person(s, f"p{i}", clock())
            p.unit = "A"
            record_pulse(s, secret=b"k", person=p, value=1, local_day=day)
    with runtime.db.session() as s:
        period = f"{day.isocalendar()[0]}-W{day.isocalendar()[1]:02d}"
        summary = pulse_summary(s, period)
    assert summary["B"] is None
    assert summary["A"].responses == 9 and round(summary["A"].heavy, 2) == round(4 / 9, 2)


def test_useless_votes_reach_threshold_and_owner_is_asked(runtime, clock):
    _group(runtime, clock)
    runtime.process(ev(clock, "a", "这个群没用 招商引资信息群"))
    runtime.process(ev(clock, "a", "这个群没用 招商引资信息群", msg="dup"))  # same voter again
    runtime.process(ev(clock, "b", kind="card_click", card_kind="useless", event_key="useless:g1"))
    with runtime.db.session() as s:
        assert s.execute(select(UselessVote)).scalars().all().__len__() == 2
        assert s.execute(select(FindingRecord)).first() is None
    out = runtime.process(ev(clock, "c", "这个群没用", group="g1"))
    assert "匿名" in out[0].text
    assert "没用" not in runtime.process(ev(clock, "zz", "这个群没用 招商引资信息群"))[0].text or True
    with runtime.db.session() as s:
        f = s.execute(select(FindingRecord)).scalar_one()
        assert f.kind == "useless" and f.group_ids == ["g1"] and f.person_ids == []
        n = s.execute(select(Notice).where(Notice.kind == "useless_review")).scalar_one()
        assert n.person_id == "owner" and "有成员匿名认为" in n.text and "3" not in n.text  # no count below 5


def test_formalism_report_reaches_commission_without_identity(runtime, clock):
    with runtime.db.session() as s:
        repo.get_or_create_person(s, "jw1", clock()).role = "commission"
        repo.get_or_create_person(s, "jw2", clock()).role = "commission"
    r = runtime.process(ev(clock, "reporter", "反映 村里要求每天在群里上传入户走访照片"))
    assert "纪委" in r[0].text
    with runtime.db.session() as s:
        ns = s.execute(select(Notice).where(Notice.kind == "formalism")).scalars().all()
        assert sorted(n.person_id for n in ns) == ["jw1", "jw2"]
        assert all("reporter" not in n.text and "入户走访照片" in n.text for n in ns)


def test_no_person_id_next_to_a_response_anywhere(runtime, clock):
    """Dump every table and search for the voter's id (the voter answers by card, DM and DM report)."""
    voter = "voter_4f2a9"
    _group(runtime, clock, members=("a", "b", voter))
    with runtime.db.session() as s:
        s.add(PulseAsk(person_id=voter, asked_at=clock() - timedelta(hours=1)))  # being asked is not an answer
    runtime.process(ev(clock, voter, kind="card_click", card_kind="pulse", event_key="pulse:2", response_code="R9",
                       msg="click1"))
    runtime.process(ev(clock, voter, "这个群没用 招商引资信息群", msg="dm1"))
    runtime.process(ev(clock, voter, "反映 要求每天发工作照片证明在岗", msg="dm2"))
    allowed = {"persons", "pulse_asks", "memberships"}
    hits = {}
    with runtime.db.engine.connect() as c:
        for table in inspect(c).get_table_names():
            for row in c.execute(text(f'SELECT * FROM "{table}"')):
                if voter in repr(tuple(row)):
                    hits.setdefault(table, []).append(tuple(row))
    assert set(hits) <= allowed, hits
    # processed_events hold the dedupe keys of the click and the anonymous commands only as keyed hashes
    with runtime.db.session() as s:
        assert s.execute(select(PulseResponse)).scalar_one().value == 2
        assert s.execute(select(UselessVote)).scalar_one().group_id == "g1"



def test_group_mention_of_useless_is_not_stored_with_sender(runtime, clock):
    _group(runtime, clock, members=("a", "b", "voter9"))
    runtime.process(ev(clock, "voter9", "@群治 这个群没用", group="g1", msg="m-77"))
    with runtime.db.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM messages WHERE sender_id = 'voter9'")).scalar() == 0


def test_card_click_dedupe_key_names_nobody_and_shares_no_transaction_with_the_voter(runtime, clock):
    """The adapter's key for a click is sender+time; stored as is, its processed_events row would be
    written in the same transaction as the answer (same xmin on PostgreSQL) and name the voter."""
    voter = "voter_7c1d2"
    _group(runtime, clock, members=("a", "b", voter))
    click = ev(clock, voter, kind="card_click", card_kind="pulse", event_key="pulse:3", response_code="R77",
               msg=f"evt:{voter}:{int(clock().timestamp())}:template_card_event")
    runtime.process(click)
    assert runtime.process(click) == []  # a WeCom retry of the same click is still recognised
    with runtime.db.session() as s:
        assert len(s.execute(select(PulseResponse)).scalars().all()) == 1
    with runtime.db.engine.connect() as c:
        keys = c.execute(text("SELECT key FROM processed_events")).scalars().all()
        assert len(keys) == 1 and voter not in keys[0] and keys[0].startswith("anon:")
        if runtime.db.dialect == "postgresql":
            xmin = c.execute(text("SELECT xmin::text FROM pulse_responses")).scalar_one()
            for table in inspect(c).get_table_names():
                for row in c.execute(text(f'SELECT * FROM "{table}" WHERE xmin::text = :x'), {"x": xmin}):
                    assert voter not in repr(tuple(row)), (table, row)
