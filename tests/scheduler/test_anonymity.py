"""Anonymity of 这个群没用 and the pulse: who may vote, what a vote may touch, what a count may show."""
from datetime import timedelta

from sqlalchemy import select

from governance.events import Event
from storage import repo
from storage.models import (Conversation, FindingRecord, Group, Message, Notice, OutboxMessage, ProcessedEvent, PulseAsk, PulseResponse,
                            UselessVote)


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
    assert _card_updates(runtime) == ["仅限群成员，未记录"]
    assert out == []  # no message to the sender: it would name who tried to vote on which group
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
        repo.insert_ignore(s, Message, [{"dedupe_key": "old-1", "platform": "wecom", "group_id": "g2",
                                         "sender_id": "seen", "sent_at": clock() - timedelta(days=3),
                                         "is_ritual": False, "text": None}], ["dedupe_key"])  # seen, not a member
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


# --- after the window: the key plus a full dump attribute nothing -------------------------------
import hashlib  # noqa: E402
import hmac  # noqa: E402
import re  # noqa: E402
from datetime import datetime, timezone  # noqa: E402

from sqlalchemy import inspect, text  # noqa: E402

from scheduler import jobs  # noqa: E402

VOTERS = ("voter_a1", "voter_b2", "voter_c3", "voter_d4")


def _dump(db) -> tuple[set[str], list[datetime]]:
    """Every value of every row of every table, as text, and every stored time."""
    values: set[str] = set()
    times: list[datetime] = []
    with db.engine.connect() as c:
        for table in inspect(c).get_table_names():
            for row in c.execute(text(f'SELECT * FROM "{table}"')):
                for v in row:
                    if isinstance(v, str) and re.fullmatch(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?", v):
                        v = datetime.fromisoformat(v)  # SQLite hands back its stored text
                    if isinstance(v, datetime):
                        times.append(v if v.tzinfo else v.replace(tzinfo=timezone.utc))
                    values.add(str(v))
                    values.update(re.findall(r"[0-9a-f]{32,}", str(v)))
    return values, times


def _h(secret: bytes, msg: str) -> str:
    return hmac.new(secret, msg.encode(), hashlib.sha256).hexdigest()


def _candidates(secret: bytes, values: set[str], times: list[datetime], event_keys: list[str],
                periods: set[str], groups: set[str]) -> dict[str, tuple]:
    """Every key we can think of that would link a stored value to a voter, given the pseudonym key."""
    salts = {""} | {v for v in values if re.fullmatch(r"[0-9a-f]{64}", v)}
    seconds = {int(t.timestamp()) for t in times}
    out: dict[str, tuple] = {}
    for salt in salts:  # the events' own keys, as if the platform's log were known too
        for k in event_keys:
            out["anon:" + _h(secret, f"{salt}|dedupe|{k}")] = ("someone", "dedupe", k, salt)
            out["anon:" + _h(secret, "dedupe|" + k)] = ("someone", "dedupe", k, "old formula")
    for person in VOTERS:
        keys = [f"wecom:evt:{person}:{s}:template_card_event" for s in seconds] + [
            f"wecom:msg:{person}:{s}" for s in seconds]
        for salt in salts:
            for purpose, scopes in (("pulse", periods), ("useless", groups)):
                for scope in scopes:
                    out[_h(secret, f"{salt}|{purpose}|{scope}|{person}")] = (person, purpose, scope, salt)
                    out[_h(secret, f"{purpose}|{scope}|{person}")] = (person, purpose, scope, "old formula")
            for k in keys:
                out["anon:" + _h(secret, f"{salt}|dedupe|{k}")] = (person, "dedupe", k, salt)
                out["anon:" + _h(secret, "dedupe|" + k)] = (person, "dedupe", k, "old formula")
    return out


def test_after_the_window_the_key_and_a_full_dump_cannot_link_a_vote_to_a_person(runtime, clock):
    secret = runtime.settings.pseudonym_secret
    _group(runtime, clock, members=VOTERS + ("x1", "x2", "x3"))
    with runtime.db.session() as s:
        for v in VOTERS:
            repo.get_or_create_person(s, v, clock()).unit = "城关镇"
            s.add(PulseAsk(person_id=v, asked_at=clock() - timedelta(hours=1)))
    a, b, c, d = VOTERS
    t = int(clock().timestamp())
    events = [
        ev(clock, a, kind="card_click", card_kind="pulse", event_key="pulse:3", response_code="RCa",
           msg=f"evt:{a}:{t}:template_card_event"),
        ev(clock, b, "2", msg=f"msg:{b}:{t}"),
        ev(clock, a, "这个群没用 招商引资信息群", msg="m-a-useless"),
        ev(clock, b, kind="card_click", card_kind="useless", event_key="useless:g1", response_code="RCb",
           msg=f"evt:{b}:{t}:template_card_event"),
        ev(clock, c, "@群治 这个群没用", group="g1", msg="m-c-useless"),
        ev(clock, d, kind="card_click", card_kind="pulse", event_key="pulse:1", response_code="RCd",
           msg=f"evt:{d}:{t}:template_card_event"),
    ]
    for e in events:
        runtime.process(e)
    event_keys = [e.dedupe_key for e in events]
    with runtime.db.session() as s:
        periods = set(s.execute(select(PulseResponse.period)).scalars())
        assert len(s.execute(select(PulseResponse)).scalars().all()) == 3
        assert len(s.execute(select(UselessVote)).scalars().all()) == 3
    # while the windows are open, the key and the salts do link: the check below can fail
    values, times = _dump(runtime.db)
    linked = {cand[:2] for k, cand in _candidates(secret, values, times, event_keys, periods, {"g1"}).items()
              if k in values}
    assert {(a, "pulse"), (a, "useless"), (b, "dedupe"), (c, "useless")} <= linked
    # every window closed (the useless window is 30 days), the job ran
    clock.advance(days=31)
    counts = jobs.close_anonymous_windows(runtime)
    assert counts["salts"] >= 3 and counts["pulse"] == 3 and counts["useless"] == 3 and counts["dedupe"] == 6
    values, times = _dump(runtime.db)
    linked = {k: cand for k, cand in _candidates(secret, values, times, event_keys, periods, {"g1"}).items()
              if k in values}
    assert linked == {}
    with runtime.db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM anon_salts")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM processed_events WHERE key LIKE 'anon:%'")).scalar() == 0
        if runtime.db.dialect == "postgresql":  # no row naming a voter shares a transaction with an answer
            for xmin in conn.execute(text("SELECT xmin::text FROM pulse_responses UNION "
                                          "SELECT xmin::text FROM useless_votes")).scalars().all():
                for table in inspect(conn).get_table_names():
                    for row in conn.execute(text(f'SELECT * FROM "{table}" WHERE xmin::text = :x'), {"x": xmin}):
                        assert not any(v in repr(tuple(row)) for v in VOTERS), (table, row)
    with runtime.db.session() as s:  # the answers still count
        assert sorted(s.execute(select(PulseResponse.value)).scalars()) == [1, 2, 3]
        assert len(s.execute(select(UselessVote)).scalars().all()) == 3


def _midnight(t: datetime) -> bool:
    return (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0)


def test_no_time_finer_than_the_day_beside_an_anonymous_row(runtime, clock):
    clock.advance(hours=3, minutes=17, seconds=5)
    _group(runtime, clock, members=("a", "b", "c"))
    with runtime.db.session() as s:
        repo.get_or_create_person(s, "jw", clock()).role = "commission"
    runtime.process(ev(clock, "a", "这个群没用 招商引资信息群"))
    with runtime.db.session() as s:
        [row] = s.execute(select(ProcessedEvent)).scalars().all()
        assert row.key.startswith("anon:") and _midnight(row.at)
        assert row.at.date() == clock().astimezone(timezone.utc).date()
    runtime.process(ev(clock, "b", kind="card_click", card_kind="useless", event_key="useless:g1", response_code="R1"))
    runtime.process(ev(clock, "c", "反映 要求每天发工作照片证明在岗"))
    with runtime.db.session() as s:
        assert all(_midnight(r.at) for r in s.execute(select(ProcessedEvent)).scalars())
        [card] = s.execute(select(OutboxMessage).where(OutboxMessage.channel == "card_update")).scalars().all()
        assert _midnight(card.created_at) and _midnight(card.next_attempt_at)
        notices = s.execute(select(Notice)).scalars().all()
        assert {n.kind for n in notices} == {"useless_review", "formalism"}
        assert all(_midnight(n.created_at) and _midnight(n.due_at) for n in notices)
        f = s.execute(select(FindingRecord)).scalar_one()
        assert _midnight(f.first_seen) and _midnight(f.last_seen)


# --- useless findings live as long as their own condition ----------------------------------------
def _useless_status(runtime):
    with runtime.db.session() as s:
        return s.execute(select(FindingRecord.status).where(FindingRecord.kind == "useless")).scalar_one()


def _refresh(runtime, clock):
    from storage.lifecycle import refresh_findings

    with runtime.db.session() as s:
        refresh_findings(s, clock(), runtime.settings)


def test_a_useless_finding_stays_open_through_sweeps_until_its_window_closes(runtime, clock):
    _group(runtime, clock)
    for who in "abc":
        runtime.process(ev(clock, who, "这个群没用 招商引资信息群"))
    assert _useless_status(runtime) == "open"
    _refresh(runtime, clock)
    clock.advance(days=29)
    _refresh(runtime, clock)
    assert _useless_status(runtime) == "open"  # the scan knows nothing of votes: it must not resolve them
    clock.advance(days=2)  # the 30-day window closed: its votes no longer count
    _refresh(runtime, clock)
    assert _useless_status(runtime) == "resolved"


def test_a_useless_finding_is_resolved_when_the_group_is_no_longer_live(runtime, clock):
    _group(runtime, clock)
    for who in "abc":
        runtime.process(ev(clock, who, "这个群没用 招商引资信息群"))
    with runtime.db.session() as s:
        s.get(Group, "g1").status = "dissolved"
    jobs.close_anonymous_windows(runtime)
    assert _useless_status(runtime) == "resolved"
