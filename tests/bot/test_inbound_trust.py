"""Odd but signed input: every adapter refuses with 400 what does not fit (wrong JSON types, ids
longer than their columns, event times far from the server clock) and changes nothing; names in
the AI bot's markdown replies cannot become links."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from storage.models import Group, Membership, Message, OutboxMessage, Person, ProcessedEvent
from tests.bot.helpers import WeComSim, aibot_post, bridge_post, text_xml
from tests.bot.test_aibot import _decrypt_reply

MODELS = (Message, ProcessedEvent, Person, Group, Membership, OutboxMessage)


@pytest.fixture
def hclient(runtime):
    from bot.app import create_app

    with TestClient(create_app(runtime=runtime, start_scheduler=False), raise_server_exceptions=False) as c:
        yield c


def nothing_stored(db) -> bool:
    with db.session() as s:
        return all(s.execute(select(func.count()).select_from(m)).scalar_one() == 0 for m in MODELS)


def _aibot(msgid="M1", **kw) -> dict:
    d = {"msgid": msgid, "aibotid": "AIBOTID", "chatid": "wrkG1", "chattype": "group", "from": {"userid": "zhangsan"},
         "response_url": "https://example.invalid/resp", "msgtype": "text", "text": {"content": "@群治 帮助"}}
    d.update(kw)
    return d


def _bridge(id_="e1", **kw) -> dict:
    e = {"id": id_, "type": "message", "platform": "wechat", "group_id": "wxg-1", "group_name": "城关镇秋粮群",
         "sender_id": "wx-zhang", "member_ids": [], "text": "大家好", "at": "2026-11-23T10:00:00+08:00"}
    e.update(kw)
    return e


# --- item 10: AI bot fields of the wrong JSON type ---------------------------------------------
WRONG_TYPES = [
    {"text": ["@群治 帮助"]},
    {"text": {"content": ["帮助"]}},
    {"msgtype": "mixed", "mixed": {"msg_item": 7}},
    {"msgtype": "mixed", "mixed": [1, 2]},
    {"msgtype": "mixed", "mixed": {"msg_item": [{"msgtype": "text", "text": "帮助"}]}},
    {"msgtype": "event", "event": {"eventtype": "template_card_event", "template_card_event": "click"}},
    {"msgtype": "event", "event": {"eventtype": "template_card_event", "template_card_event": {
        "task_id": "keep:g:1", "selected_items": {"selected_item": {"question_key": "q"}}}}},
    {"msgtype": "event", "event": {"eventtype": "template_card_event", "template_card_event": {
        "task_id": "keep:g:1", "selected_items": {"selected_item": [{"option_ids": {"option_id": "keep"}}]}}}},
    {"msgtype": "event", "event": "enter_chat"},
    {"from": "zhangsan"},
    {"from": {"userid": ["zhangsan"]}},
    {"msgid": {"id": 1}},
    {"chatid": ["wrkG1"]},
    {"create_time": "yesterday"},
    {"response_url": 5},
]


@pytest.mark.parametrize("fields", WRONG_TYPES, ids=[json.dumps(w, ensure_ascii=False)[:60] for w in WRONG_TYPES])
def test_aibot_fields_of_the_wrong_type_are_400(hclient, clock, db, fields):
    r = aibot_post(hclient, clock, _aibot(**fields), nonce="w1")
    assert r.status_code == 400, r.status_code
    assert r.text == "请求格式错误"
    assert nothing_stored(db)


# --- item 10: ids longer than their columns ---------------------------------------------------------
@pytest.mark.parametrize("fields", [
    {"from": {"userid": "u" * 65}},
    {"chatid": "g" * 129},
    {"msgid": "m" * 129},
], ids=["userid", "chatid", "msgid"])
def test_aibot_ids_longer_than_their_columns_are_400(hclient, clock, db, fields):
    r = aibot_post(hclient, clock, _aibot(**fields), nonce="l1")
    assert r.status_code == 400
    assert nothing_stored(db)
    # the longest that fits is stored
    ok = {k: ({"userid": "u" * 64} if k == "from" else v[:128]) for k, v in fields.items()}
    assert aibot_post(hclient, clock, _aibot(**ok), nonce="l2").status_code == 200


@pytest.mark.parametrize("sender,msg_id", [("u" * 65, "1"), ("zhangsan", "9" * 65)], ids=["FromUserName", "MsgId"])
def test_wecom_ids_longer_than_their_columns_are_400(hclient, clock, db, sender, msg_id):
    sim = WeComSim(hclient, clock)
    r = sim.post_plain(text_xml(sender, "帮助", int(clock().timestamp()), msg_id))
    assert r.status_code == 400
    assert nothing_stored(db)


@pytest.mark.parametrize("fields", [
    {"sender_id": "s" * 60},             # wechat:<60> is longer than persons.id (64)
    {"member_ids": ["m" * 60], "type": "member_joined"},
    {"member_ids": [""], "type": "member_joined"},
    {"group_id": "g" * 125},             # wechat:<125> is longer than groups.id (128)
], ids=["sender", "member", "empty-member", "group"])
def test_bridge_ids_longer_than_their_columns_are_400(hclient, clock, db, fields):
    r = bridge_post(hclient, clock, _bridge(**fields))
    assert r.status_code == 400, r.text
    assert r.json()["ok"] is False and r.json()["error"]
    assert nothing_stored(db)


# --- item 10: names in markdown replies ----------------------------------------------------------------
def test_a_group_name_in_an_aibot_markdown_reply_is_not_a_link(hclient, clock, db, monkeypatch):
    from governance.events import Reply

    runtime = hclient.app.state.runtime
    monkeypatch.setattr(runtime, "process", lambda e: [Reply("“[点此登录](http://x)”已登记。*注意* `x` <b>")])
    monkeypatch.setattr(runtime, "group_commit", False)  # the replaced handler, one event at a time
    r = aibot_post(hclient, clock, _aibot(), nonce="md1")
    content = _decrypt_reply(r.json(), clock)["stream"]["content"]
    assert "[点此登录](" not in content
    assert "*注意*" not in content and "`x`" not in content and "<b>" not in content
    from platforms.aibot.inbound import markdown_escape

    assert content == markdown_escape("“[点此登录](http://x)”已登记。*注意* `x` <b>")
    assert "点此登录" in content and "已登记" in content


def test_markdown_escape_neutralises_block_syntax():
    from platforms.aibot.inbound import markdown_escape

    out = markdown_escape("# 标题\n> 引用\n- 列表\n1. 第一\n普通文字 3.5 a-b")
    assert out.splitlines() == ["\\# 标题", "\\> 引用", "\\- 列表", "1\\. 第一", "普通文字 3.5 a-b"]


# --- item 5: event times far from the server clock -----------------------------------------------------
@pytest.mark.parametrize("at,status", [
    ("9999-12-31T23:59:59+08:00", 400),
    ("2026-11-23T10:06:00+08:00", 400),   # six minutes ahead of the server clock (tolerance 300 s)
    ("2026-11-23T10:04:00+08:00", 200),   # four minutes ahead: clocks differ
    ("2026-11-15T10:00:00+08:00", 400),   # eight days old
    ("2026-11-17T10:00:00+08:00", 200),   # six days old: a bridge catching up after an outage
    ("0001-01-01T00:00:00+00:00", 400),
])
def test_bridge_event_times_are_checked_against_the_clock(hclient, clock, db, at, status):
    r = bridge_post(hclient, clock, _bridge(at=at))
    assert r.status_code == status, r.text
    if status == 400:
        assert "时间" in r.json()["error"]
        assert nothing_stored(db)
    else:
        with db.session() as s:
            assert s.execute(select(func.count()).select_from(Message)).scalar_one() == 1


@pytest.mark.parametrize("delta,status", [(10**10, 400), (400, 400), (200, 200), (-8 * 86400, 400),
                                          (-6 * 86400, 200), (-10**12, 400)])
def test_wecom_create_time_is_checked_against_the_clock(hclient, clock, db, delta, status):
    sim = WeComSim(hclient, clock)
    r = sim.post_plain(text_xml("zhangsan", "帮助", int(clock().timestamp()) + delta, "77001"))
    assert r.status_code == status
    if status == 400:
        assert nothing_stored(db)


@pytest.mark.parametrize("delta,status", [(10**9, 400), (400, 400), (-30 * 86400, 400), (-60, 200)])
def test_aibot_create_time_is_checked_against_the_clock(hclient, clock, db, delta, status):
    r = aibot_post(hclient, clock, _aibot(create_time=int(clock().timestamp()) + delta), nonce="t1")
    assert r.status_code == status
    if status == 400:
        assert nothing_stored(db)


def test_archive_import_refuses_rows_far_in_the_future(db, clock, settings, tmp_path):
    from storage.importers import import_messages

    path = tmp_path / "m.jsonl"
    rows = [{"group_id": "g1", "sender_id": "a", "sent_at": "2019-05-01T09:00:00+08:00", "msg_id": "1"},
            {"group_id": "g1", "sender_id": "b", "sent_at": "9999-12-31T09:00:00+08:00", "msg_id": "2"},
            {"group_id": "g1", "sender_id": "c", "sent_at": "1970-01-02T09:00:00+08:00", "msg_id": "3"},
            {"group_id": "g1", "sender_id": "d" * 65, "sent_at": "2026-11-20T09:00:00+08:00", "msg_id": "4"}]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    with db.session() as s:
        res = import_messages(s, path, now=clock(), settings=settings)
    assert not res.imported
    assert [e.row for e in res.errors] == [2, 3, 4]
    assert "晚于" in res.errors[0].reason and "早于" in res.errors[1].reason and "过长" in res.errors[2].reason
    assert nothing_stored(db)
    with db.session() as s:
        res = import_messages(s, path, now=clock(), settings=settings, skip_invalid=True)
    assert res.imported and res.created == 1  # an archive may be years old
    with db.session() as s:
        g = s.get(Group, "g1")
        assert g.last_message_at.year == 2019


# --- item 3: bridge ids are scoped by platform; no event touches another platform's group ---------
def _wecom_group(db, gid="wrkG1"):
    """A WeCom group the AI bot reported (its chatid is the id), with one member and one message."""
    from storage import repo

    with db.session() as s:
        repo.ensure_group(s, group_id=gid, platform="aibot", at=clock_at(), name="城关镇防汛群")
        repo.add_members(s, gid, ["zhangsan"], clock_at())


def clock_at():
    from tests.conftest import Clock

    return Clock()() - timedelta(days=1)


def _wecom_state(db, gid="wrkG1"):
    with db.session() as s:
        g = s.get(Group, gid)
        members = sorted(s.execute(select(Membership.person_id).where(Membership.group_id == gid)).scalars())
        msgs = s.execute(select(func.count()).select_from(Message).where(Message.group_id == gid)).scalar_one()
        return (g.name, g.platform, g.member_count, g.message_count, members, msgs)


@pytest.mark.parametrize("event", [
    _bridge("h1", group_id="wrkG1", text="大家好"),
    _bridge("h2", type="group_renamed", group_id="wrkG1", group_name="[点此登录](http://x)"),
    _bridge("h3", type="member_joined", group_id="wrkG1", member_ids=["lisi"]),
    _bridge("h4", type="member_left", group_id="wrkG1", member_ids=["zhangsan"]),
    _bridge("h5", group_id="wrkG1", text="@群治 这个群没用", mentioned_bot=True),
], ids=["message", "renamed", "joined", "left", "useless-vote"])
def test_a_bridge_event_never_changes_a_wecom_group(hclient, clock, db, event):
    _wecom_group(db)
    before = _wecom_state(db)
    r = bridge_post(hclient, clock, event)
    assert r.status_code == 200
    assert _wecom_state(db) == before
    with db.session() as s:
        from storage.models import UselessVote

        assert s.execute(select(func.count()).select_from(UselessVote)).scalar_one() == 0
        if not event.get("mentioned_bot"):
            assert s.get(Group, "wechat:wrkG1").platform == "wechat"  # the bridge's own group of that name


@pytest.mark.parametrize("platform", ["wecom", "aibot", "ledger", "local"])
def test_a_bridge_cannot_claim_a_wecom_platform(hclient, clock, db, platform):
    r = bridge_post(hclient, clock, _bridge(platform=platform))
    assert r.status_code == 400 and "platform" in r.json()["error"]
    assert nothing_stored(db)


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "per-event"])
def test_the_guard_holds_on_every_ingest_path(runtime, db, clock, bulk):
    """Events built by any adapter: one naming a group stored under a platform it may not touch is
    claimed (a retry changes nothing) but never applied, on the bulk paths (SQLite's statements,
    PostgreSQL's one statement) and the per-event path; so is one naming a group that an earlier
    event of the same batch, from another platform, creates."""
    from bot.writer import run_batch
    from governance.events import Event

    _wecom_group(db)
    before = _wecom_state(db)
    t = clock()
    events = [Event(platform="wechat", kind="message", sender_id="wechat:a", at=t, text="收到", group_id="wrkG1",
                    msg_id="bridge:x1"),
              Event(platform="wechat", kind="member_joined", sender_id="wechat:a", at=t, group_id="wrkG1",
                    member_ids=("wechat:b",), msg_id="bridge:x2"),
              Event(platform="aibot", kind="message", sender_id="lisi", at=t, text="材料已上传", group_id="newG",
                    msg_id="x3"),
              Event(platform="wechat", kind="message", sender_id="wechat:c", at=t, text="材料", group_id="newG",
                    msg_id="bridge:x4"),
              Event(platform="aibot", kind="message", sender_id="wangwu", at=t, text="好", group_id="wrkG1",
                    msg_id="x5")]
    runtime.bulk = bulk
    outcomes = {}
    run_batch(runtime, events, lambda items: outcomes.update(items))
    assert all(not isinstance(o, BaseException) for o in outcomes.values()), outcomes
    with db.session() as s:
        g = s.get(Group, "wrkG1")
        assert sorted(s.execute(select(Membership.person_id).where(Membership.group_id == "wrkG1")).scalars()) == [
            "wangwu", "zhangsan"]
        assert (g.platform, g.message_count) == ("aibot", 1)  # only the AI bot's own message
        n = s.get(Group, "newG")
        assert n.platform == "aibot" and n.message_count == 1
        assert sorted(s.execute(select(Membership.person_id).where(Membership.group_id == "newG")).scalars()) == [
            "lisi"]
        assert s.get(Person, "wechat:a") is None and s.get(Person, "wechat:c") is None
        assert s.execute(select(func.count()).select_from(ProcessedEvent)).scalar_one() == 5
    assert before[0] == _wecom_state(db)[0]


def test_instructions_to_the_bridge_carry_the_raw_group_id(fake_wecom):
    from platforms.bridge.inbound import group_id
    from platforms.bridge.sender import BridgeSender
    from tests.conftest import BRIDGE_SECRET

    b = BridgeSender(fake_wecom.bridge_url, BRIDGE_SECRET, clock=lambda: 1_800_000_000)
    assert b.dissolve(group_id=group_id("wechat", "wxg-1"), instruction_id="ins-1").ok
    assert b.send_group_text(group_id("qq", "123:4"), "本群已完成使命", instruction_id="ins-2").ok
    assert b.post({"type": "cancel_dissolve", "group_id": "wechat:wxg-1", "instruction_id": "ins-1",
                   "platform": "wechat"}).ok
    sent = [c.json for c in fake_wecom.calls_to("/bridge/inbox")[-3:]]
    assert [(j["type"], j["group_id"], j["platform"]) for j in sent] == [
        ("dissolve", "wxg-1", "wechat"), ("say", "123:4", "qq"), ("cancel_dissolve", "wxg-1", "wechat")]


def test_a_bridge_dissolution_is_confirmed_with_the_raw_id(runtime, client, clock, db):
    """The bridge's group wxg-9 is stored as wechat:wxg-9; its dissolution instruction names wxg-9
    and the bridge's confirmation with wxg-9 finishes it."""
    from platforms.bridge.sender import outgoing
    from storage import lifecycle

    r = bridge_post(client, clock, _bridge("d1", group_id="wxg-9"))
    assert r.status_code == 200
    with db.session() as s:
        g = s.get(Group, "wechat:wxg-9")  # warned, and the grace since the warning went out has passed
        g.status, g.warned_at, g.warning_sent_at = "warned", clock() - timedelta(days=9), clock() - timedelta(days=8)
        lifecycle.begin_dissolution(s, g, clock(), runtime.settings, capabilities=runtime.services.capabilities,
                                    actor="test", reason="长期无工作消息")
    with db.session() as s:
        o = s.execute(select(OutboxMessage).where(OutboxMessage.kind == "bridge_dissolve")).scalar_one()
        sent = outgoing(o.payload)
        assert (sent["group_id"], sent["platform"]) == ("wxg-9", "wechat")
        iid = sent["instruction_id"]
    r = bridge_post(client, clock, _bridge("d2", type="dissolve_confirmed", group_id="wxg-9", sender_id="bridge",
                                           instruction_id=iid))
    assert r.status_code == 200
    with db.session() as s:
        assert s.get(Group, "wechat:wxg-9").status == "dissolved"


# --- NUL characters: PostgreSQL refuses them in text columns ------------------------------------------
@pytest.mark.parametrize("fields", [
    {"sender_id": "wx\u0000zhang"}, {"group_id": "wxg\u00001"}, {"member_ids": ["a\u0000"], "type": "member_joined"},
    {"id": "e\u00001"},
], ids=["sender", "group", "member", "id"])
def test_bridge_ids_with_a_nul_are_400(hclient, clock, db, fields):
    r = bridge_post(hclient, clock, _bridge(**fields))
    assert r.status_code == 400, r.text
    assert nothing_stored(db)


def test_bridge_text_and_names_with_a_nul_are_stored_without_it(hclient, clock, db):
    from storage.models import Group

    r = bridge_post(hclient, clock, _bridge(text="\u0000收到\u0000", group_name="城关\u0000镇群"))
    assert r.status_code == 200, r.text
    with db.session() as s:
        assert s.get(Group, "wechat:wxg-1").name == "城关镇群"


@pytest.mark.parametrize("data", [
    _aibot(msgid="\u0000"), _aibot(**{"from": {"userid": "zhang\u0000san"}}), _aibot(chatid="wrk\u0000G1"),
], ids=["msgid", "userid", "chatid"])
def test_aibot_ids_with_a_nul_are_400(hclient, clock, db, data):
    r = aibot_post(hclient, clock, data, nonce="nul1")
    assert r.status_code == 400, r.text
    assert nothing_stored(db)


def test_aibot_text_with_a_nul_is_handled(hclient, clock, db):
    r = aibot_post(hclient, clock, _aibot(text={"content": "@群治 帮\u0000助"}), nonce="nul2")
    assert r.status_code == 200, r.text
