"""建群 and the sync job on Feishu, end to end: a Feishu cadre says 建群 through the encrypted, signed
callback; the every-minute job creates the group on the fake Feishu (lark-oapi over HTTP) with the
person as its owner, and it is registered under its scoped id; the sync job then lists it and
records nothing twice (Feishu's raw ids are scoped once, by storage, never by the sender)."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from scheduler import jobs
from storage import audit, repo
from storage.models import Group, Notice, OutboxMessage, PlatformRequest
from tests.feishu.helpers import feishu_settings, message
from tests.feishu.test_inbound import _post
from tests.lifecycle.helpers import NOW, person

OWNER, A, B = "ou_owner000000000000000000000001", "ou_a00000000000000000000000000002", "ou_b000000000000000000000000003"
TEXT = "建群 秋粮收购专班 成员:张三、李四 到期:12月31日"


@pytest.fixture
def settings(fake_feishu):
    # WeCom's app cannot send here: only Feishu can create the group
    return feishu_settings(feishu_domain=fake_feishu.domain, wecom_secret="")


@pytest.fixture
def roster(runtime):
    with runtime.db.session() as s:  # Feishu persons as their events store them (natural accounts)
        person(s, "feishu:" + OWNER, name="李主任")
        person(s, "feishu:" + A, name="张三")
        person(s, "feishu:" + B, name="李四")


def test_a_feishu_cadre_creates_a_group_that_is_registered_and_then_listed_by_the_sync(
        client, runtime, clock, fake_feishu, roster):
    db = runtime.db
    clock.set(NOW)
    assert _post(client, clock, message(None, OWNER, TEXT, at=NOW.timestamp())).status_code == 200
    with db.session() as s:
        [req] = s.execute(select(PlatformRequest)).scalars()
        assert (req.platform, req.status, req.payload["owner_account"]) == ("feishu", "pending", OWNER)
        assert sorted(m["account"] for m in req.payload["members"]) == sorted([A, B])
        [ack] = s.execute(select(OutboxMessage).where(OutboxMessage.recipient == "feishu:" + OWNER)).scalars()
        assert "正在飞书上建群“秋粮收购专班”" in ack.payload["text"]
    assert not fake_feishu.chats and not fake_feishu.calls_to("POST", "/im/v1/chats")  # not inside the event

    clock.set(NOW + timedelta(minutes=1))
    assert jobs.platform_requests(runtime)["done"] == 1
    [(chat_id, chat)] = fake_feishu.chats.items()
    assert chat.owner == OWNER and sorted(chat.members) == sorted([OWNER, A, B]) and chat.created_by_bot
    assert chat.name == "秋粮收购专班"
    gid = "feishu:" + chat_id
    with db.session() as s:
        assert s.execute(select(func.count()).select_from(Group)).scalar_one() == 1
        g = s.get(Group, gid)
        assert (g.platform, g.owner_id, g.temporary, g.expires_at, g.activity_source) == (
            "feishu", "feishu:" + OWNER, True, date(2026, 12, 31), "mentions")
        assert g.registered_at is not None
        assert sorted(repo.member_ids(s, gid)) == sorted("feishu:" + u for u in (OWNER, A, B))
        assert [r.status for r in s.execute(select(PlatformRequest)).scalars()] == ["done"]
        [n] = s.execute(select(Notice).where(Notice.kind == "group_created")).scalars()
        assert n.person_id == "feishu:" + OWNER and "已在飞书建群“秋粮收购专班”" in n.text
        assert audit.verify(s).ok

    # the sync lists the same group: recorded once, under the same id, its members unchanged
    out = jobs.sync_groups(runtime)
    assert out["feishu"]["listed"] == 1 and out["feishu"]["new"] == 0 and out["feishu"]["stopped"] == ""
    assert (out["feishu"]["members_added"], out["feishu"]["members_removed"]) == (0, 0)
    # a member joined on Feishu and a group the bot was added to by a person: the next sync sees both
    fake_feishu.chats[chat_id].members.append("ou_c00000000000000000000000000004")
    fake_feishu.add_chat("oc_other0000000000000000000000001", "防汛群", A, [B])
    out = jobs.sync_groups(runtime)
    # added: the new member of ours, and the other group's two
    assert (out["feishu"]["listed"], out["feishu"]["new"], out["feishu"]["members_added"]) == (2, 1, 3)
    with db.session() as s:
        ids = sorted(s.execute(select(Group.id)).scalars())
        assert ids == sorted([gid, "feishu:oc_other0000000000000000000000001"])
        assert "feishu:ou_c00000000000000000000000000004" in repo.member_ids(s, gid)
        other = s.get(Group, "feishu:oc_other0000000000000000000000001")
        assert (other.platform, other.source, other.registered_at) == ("feishu", "activity", None)
        assert sorted(repo.member_ids(s, other.id)) == sorted(["feishu:" + A, "feishu:" + B])
