"""What a command needs is declared on it and enforced by dispatch: who may use it
(``permission``), where it may be said (``in_group``), and its line in 帮助 (``summary``)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from handlers import registry
from handlers.permissions import ADMIN, COMMISSION, OWNER, UNIT_ADMIN
from storage.models import AuditRecord, FormalismReport, Group, LoginToken, Membership, Person
from tests.factories import Chat


@pytest.fixture
def chat(runtime, clock):
    return Chat(runtime, clock)


def _seed(runtime, clock):
    now = clock()
    with runtime.db.session() as s:
        s.add_all([Person(id="owner", name="张群主", unit="甲镇", role="cadre", created_at=now),
                   Person(id="cadre", unit="甲镇", role="cadre", created_at=now),
                   Person(id="ua", unit="甲镇", role="unit_admin", created_at=now),
                   Person(id="ub", unit="乙镇", role="unit_admin", created_at=now),
                   Person(id="jw", unit="县纪委", role="commission", created_at=now),
                   Person(id="boss", role="admin", created_at=now)])
        for gid, name in (("g1", "测试专班群"), ("g2", "目标群")):
            s.add(Group(id=gid, platform="wecom", name=name, owner_id="owner", unit="甲镇", category="临时群",
                        temporary=True, created_at=now - timedelta(days=60), first_seen_at=now - timedelta(days=60),
                        registered_at=now - timedelta(days=60),
                        source="ledger", status="active", expires_at=(now + timedelta(days=10)).date(),
                        updated_at=now))
        s.flush()
        s.add_all([Membership(group_id=g, person_id=p, joined_at=now) for g in ("g1", "g2") for p in ("owner", "cadre")])


def _cmd(keyword: str) -> registry.Command:
    found = registry.match(keyword)
    assert found is not None and keyword in found[0].keywords
    return found[0]


@pytest.mark.parametrize("keyword", ["续期", "完成", "保留", "恢复", "已解散"])
def test_owner_commands_declare_owner_or_administrators(keyword):
    cmd = _cmd(keyword)
    assert cmd.permission == OWNER | ADMIN | UNIT_ADMIN and cmd.target is not None


@pytest.mark.parametrize("keyword", ["合并", "保护", "确认保护", "取消保护"])
def test_administrator_commands_declare_administrators(keyword):
    cmd = _cmd(keyword)
    assert cmd.permission == ADMIN | UNIT_ADMIN and cmd.target is not None


def test_the_dashboard_link_is_declared_for_the_commission_in_a_direct_chat():
    cmd = _cmd("看板")
    assert cmd.permission == COMMISSION | ADMIN and cmd.in_group is False


REFUSALS = [  # (who, text, the refusal, word for word)
    ("cadre", "续期 测试专班群 30天", "只有群主（张群主）或管理员可以操作这个群。"),
    ("ub", "完成 测试专班群", "只有群主（张群主）或管理员可以操作这个群。"),
    ("cadre", "合并 测试专班群 到 目标群", "只有管理员或“甲镇”的单位管理员可以进行这项操作。"),
    ("ub", "取消保护 测试专班群", "只有管理员或“甲镇”的单位管理员可以进行这项操作。"),
    ("owner", "看板", "抱歉，看板只向纪委监委和管理员开放。您可以发“我的群”查看自己的群。"),
]


@pytest.mark.parametrize("who,text,refusal", REFUSALS)
def test_a_refusal_says_who_may_act_and_changes_nothing(chat, runtime, clock, who, text, refusal):
    _seed(runtime, clock)
    assert chat.say(who, text) == refusal
    with runtime.db.session() as s:
        assert s.execute(select(func.count()).select_from(AuditRecord)).scalar_one() == 0
        assert s.execute(select(func.count()).select_from(LoginToken)).scalar_one() == 0


def test_in_group_is_enforced_for_every_command_declared_direct_only(chat, runtime, clock):
    """Said in a group, a direct-only command answers its private reply (or nothing) and does nothing,
    even from a person it would serve."""
    _seed(runtime, clock)
    direct_only = [c for c in registry.commands() if not c.in_group]
    assert {"看板", "反映", "1"} <= {k for c in direct_only for k in c.keywords}
    for cmd in direct_only:
        kw = cmd.keywords[0]
        said = chat.say("boss", f"@群治 {kw} 村里要求每天上传入户走访照片" if kw == "反映" else f"@群治 {kw}",
                        group="g1")
        assert said == (cmd.private_reply if cmd.private_reply is not None else f"请私聊我发送“{kw}”。")
    with runtime.db.session() as s:
        assert s.execute(select(func.count()).select_from(LoginToken)).scalar_one() == 0
        assert s.execute(select(func.count()).select_from(FormalismReport)).scalar_one() == 0


def _help_lines(chat, who: str) -> list[str]:
    text = chat.say(who, "帮助")
    assert text.startswith("我是群治助手")
    return text.splitlines()


def test_help_is_written_from_the_commands_a_person_may_use(chat, runtime, clock):
    _seed(runtime, clock)
    listed = [c for c in registry.commands() if c.summary and "帮助" not in c.keywords]
    admin = "\n".join(_help_lines(chat, "boss"))
    for c in listed:  # every summary, with how the command is said
        assert f"{c.usage or c.keywords[0]}：{c.summary}" in admin, c.keywords
    cadre = "\n".join(_help_lines(chat, "cadre"))
    for word in ("报备", "我的群", "续期", "完成", "保留", "恢复", "这个群没用", "反映"):
        assert f"· {word}" in cadre
    for word in ("合并", "取消保护", "看板"):  # not theirs to use: not listed
        assert word not in cadre
    assert "· 看板" in "\n".join(_help_lines(chat, "jw")) and "合并" not in "\n".join(_help_lines(chat, "jw"))
    assert "（请私聊我）" in next(line for line in _help_lines(chat, "cadre") if line.startswith("· 反映"))


def test_help_fits_one_wecom_text_message(chat, runtime, clock):
    _seed(runtime, clock)
    assert len(chat.say("boss", "帮助").encode()) <= 2048
