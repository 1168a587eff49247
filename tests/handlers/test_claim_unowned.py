"""An unowned group is claimed only from inside it, or by an administrator of its unit."""
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from storage import repo
from storage.models import AuditRecord, Group, Person
from tests.factories import Chat

CLAIM = "报备 名称:无主群 用途:测试 单位:城关镇 类别:临时群 到期:30天"


@pytest.fixture
def chat(runtime, clock):
    with runtime.db.session() as s:
        for pid, unit, role in (("rong", "容美镇", "cadre"), ("m1", "城关镇", "cadre"),
                                ("ua_cg", "城关镇", "unit_admin"), ("ua_rm", "容美镇", "unit_admin")):
            p = repo.get_or_create_person(s, pid, clock())
            p.unit, p.role = unit, role
        g = repo.ensure_group(s, group_id="wz1", platform="wecom", at=clock() - timedelta(days=60), name="无主群",
                              source="ledger")
        g.unit = "城关镇"
        repo.add_members(s, "wz1", ["m1", "m2", "m3"], clock() - timedelta(days=60))  # from a ledger import
    return Chat(runtime, clock)


def state(runtime):
    with runtime.db.session() as s:
        return ([(g.id, g.name, g.owner_id, g.unit, g.category, g.temporary, g.expires_at, g.done_at, g.status,
                  g.registered_at) for g in s.execute(select(Group).order_by(Group.id)).scalars()],
                s.execute(select(func.count()).select_from(AuditRecord)).scalar_one())


@pytest.mark.parametrize("who", ["rong", "m1", "ua_rm"])
def test_outsider_cannot_claim_an_unowned_group_by_stating_its_unit(chat, runtime, who):
    before = state(runtime)
    reply = chat.say(who, CLAIM)
    assert "在该群里发送“报备”" in reply and "城关镇" in reply and "单位管理员" in reply
    assert "没有改动" in reply
    assert state(runtime) == before
    chat.say(who, "完成 无主群")
    assert state(runtime) == before


def test_claimed_from_inside_the_group(chat, runtime):
    reply = chat.say("rong", "报备 用途:测试 单位:城关镇 类别:临时群 到期:30天", group="wz1")
    assert reply.startswith("已登记：无主群")
    with runtime.db.session() as s:
        assert s.get(Group, "wz1").owner_id == "rong"


def test_claimed_by_the_unit_administrator(chat, runtime):
    assert chat.say("ua_cg", CLAIM).startswith("已登记：无主群")
    with runtime.db.session() as s:
        assert s.get(Group, "wz1").owner_id == "ua_cg"
