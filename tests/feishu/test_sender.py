"""FeishuSender (lark-oapi over HTTP) against the fake Feishu server: token caching and refresh,
messages and cards, every GroupOps method with pagination, rate limits and Feishu's error codes."""
from __future__ import annotations

import json

import pytest

from platforms.base import GroupGone, GroupOps, PermanentSendError, TransientSendError, group_gone
from platforms.feishu.sender import FeishuSender, feishu_card
from storage.feedback import pulse_card
from tests.fakes.fake_feishu import FakeFeishu
from tests.feishu.helpers import feishu_settings

OWNER = "ou_owner"


def _sender(fake: FakeFeishu, **kw) -> FeishuSender:
    waits: list[float] = []
    s = FeishuSender(feishu_settings(feishu_domain=fake.domain, **kw), sleep=waits.append)
    s.waits = waits
    return s


def test_it_is_a_group_ops_sender(fake_feishu):
    assert isinstance(_sender(fake_feishu), GroupOps)


def test_token_is_cached_and_refreshed_once_on_an_invalid_token(fake_feishu):
    s = _sender(fake_feishu)
    s.send_text(["feishu:ou_a"], "一")
    s.send_text(["feishu:ou_b"], "二")
    assert len(fake_feishu.calls_to("POST", "/auth/v3/tenant_access_token")) == 1
    fake_feishu.expire_token()
    s.send_text(["feishu:ou_c"], "三")  # 99991663, a new token, the call again
    assert len(fake_feishu.calls_to("POST", "/auth/v3/tenant_access_token")) == 2
    assert [m["receive_id"] for m in fake_feishu.messages] == ["ou_a", "ou_b", "ou_c"]
    tokens = [c.token for c in fake_feishu.calls_to("POST", "/im/v1/messages")]
    assert tokens[0] == tokens[1] != tokens[-1]


def test_wrong_secret_is_permanent(fake_feishu):
    s = FeishuSender(feishu_settings(feishu_domain=fake_feishu.domain, feishu_app_secret="not-the-secret"))
    with pytest.raises(PermanentSendError) as e:
        s.send_text(["feishu:ou_a"], "x")
    assert e.value.errcode == 10014


def test_messages_to_a_person_and_a_group_with_the_scope_removed(fake_feishu):
    fake_feishu.add_chat("oc_1", "群", OWNER, ["ou_a"], created_by_bot=True)
    s = _sender(fake_feishu)
    r = s.send_text(["feishu:ou_a"], "请于周五前报送")
    assert r.ok and r.msgid.startswith("om_")
    s.send_group_text("feishu:oc_1", "群通知")
    s.send_card(["feishu:ou_a"], pulse_card("pulse:abc"))
    kinds = [(m["receive_id_type"], m["receive_id"], m["msg_type"]) for m in fake_feishu.messages]
    assert kinds == [("open_id", "ou_a", "text"), ("chat_id", "oc_1", "text"), ("open_id", "ou_a", "interactive")]
    card = json.loads(fake_feishu.messages[-1]["content"])
    values = [a["value"] for el in card["elements"] if el["tag"] == "action" for a in el["actions"]]
    assert values == [{"key": f"pulse:{v}", "task_id": "pulse:abc"} for v in (1, 2, 3)]
    assert card["config"]["update_multi"] is True


def test_a_resent_message_is_delivered_once(fake_feishu):
    """The uuid is derived from recipient and content: the outbox may resend an uncertain one."""
    s = _sender(fake_feishu)
    a = s.send_text(["feishu:ou_a"], "同一条")
    b = s.send_text(["feishu:ou_a"], "同一条")
    assert a.msgid == b.msgid and len(fake_feishu.messages) == 1
    assert s.duplicate_check and s.duplicate_check_interval == 3600


def test_errors_map_to_transient_and_permanent(fake_feishu):
    s = _sender(fake_feishu)
    fake_feishu.rate_limit_next(1, reset=7)
    with pytest.raises(TransientSendError) as e:
        s.send_text(["feishu:ou_a"], "x")
    assert e.value.rate_limited and e.value.errcode == 99991400 and e.value.http_status == 429
    assert e.value.retry_after == 7
    fake_feishu.http_status_next(1, 502)
    with pytest.raises(TransientSendError) as e:
        s.send_text(["feishu:ou_a"], "x")
    assert not e.value.rate_limited
    fake_feishu.fail_next(1, 230001, "invalid message content")
    with pytest.raises(PermanentSendError) as e:
        s.send_text(["feishu:ou_a"], "x")
    assert e.value.errcode == 230001
    fake_feishu.fail_next(1, 232019, "The request has been rate limited.")
    with pytest.raises(TransientSendError) as e:
        s.group_rename("feishu:oc_x", "x")
    assert e.value.rate_limited


def test_unreachable_host_is_transient():
    s = FeishuSender(feishu_settings(feishu_domain="http://127.0.0.1:9"), timeout=2)
    with pytest.raises(TransientSendError):
        s.send_text(["feishu:ou_a"], "x")


def test_list_groups_and_members_paginate_and_wait_out_rate_limits(fake_feishu):
    for i in range(5):
        fake_feishu.add_chat(f"oc_{i}", f"群{i}", OWNER, [f"ou_{i}_{j}" for j in range(3)], created_by_bot=True)
    fake_feishu.add_chat("oc_gone", "不在的群", OWNER, [], bot_in=False)
    s = _sender(fake_feishu)
    fake_feishu.rate_limit_next(1, reset=2)
    groups = s.list_groups()
    # GroupOps speaks Feishu's own ids (storage.sync scopes them)
    assert [g.chat_id for g in groups] == [f"oc_{i}" for i in range(5)]
    assert groups[0].owner == OWNER and groups[0].name == "群0"
    assert s.waits == [2.0]
    pages = fake_feishu.calls_to("GET", "/im/v1/chats")
    assert len(pages) == 1 + 3 and [c.query.get("page_token") for c in pages[1:]] == [None, "2", "4"]
    assert s.group_members("oc_0") == {OWNER, *(f"ou_0_{j}" for j in range(3))}
    assert s.group_members("feishu:oc_0") == s.group_members("oc_0")  # a stored id is accepted too


def test_a_rate_limit_that_does_not_end_is_transient(fake_feishu):
    s = _sender(fake_feishu)
    fake_feishu.rate_limit_next(10, reset=60)
    with pytest.raises(TransientSendError) as e:
        s.list_groups()
    assert e.value.rate_limited and s.waits == [5.0, 5.0, 5.0]  # max_wait, three times, then it gives up


def test_remove_and_add_members_fifty_at_a_time(fake_feishu):
    members = [f"ou_m{i:03d}" for i in range(120)]
    chat = fake_feishu.add_chat("oc_big", "大群", OWNER, members, created_by_bot=True)
    s = _sender(fake_feishu)
    s.group_remove("oc_big", members)
    deletes = fake_feishu.calls_to("DELETE", "/im/v1/chats/oc_big/members")
    assert [len(c.json["id_list"]) for c in deletes] == [50, 50, 20]
    assert all(c.query["member_id_type"] == "open_id" for c in deletes)
    assert chat.members == [OWNER]
    s.group_add("oc_big", members)
    assert [len(c.json["id_list"]) for c in fake_feishu.calls_to("POST", "/im/v1/chats/oc_big/members")] == [50, 50, 20]
    assert set(chat.members) == {OWNER, *members}


def test_rename_and_disband_a_group_the_bot_created(fake_feishu):
    chat = fake_feishu.add_chat("oc_t", "秋粮收购专班", OWNER, ["ou_a"], created_by_bot=True)
    s = _sender(fake_feishu)
    s.group_rename("oc_t", "[已解散]秋粮收购专班")
    assert chat.name == "[已解散]秋粮收购专班"
    assert s.group_disband("oc_t").ok and chat.dissolved
    with pytest.raises(GroupGone) as e:  # 232009 already dissolved: the purge counts it done
        s.group_disband("oc_t")
    assert e.value.errcode == 232009 and group_gone(s, e.value)


def test_disband_refusals_are_permanent(fake_feishu):
    fake_feishu.add_chat("oc_person", "个人建的群", OWNER, ["ou_a"])  # owned by a person, not created by the bot
    fake_feishu.add_chat("oc_out", "机器人不在的群", OWNER, ["ou_a"], created_by_bot=True, bot_in=False)
    s = _sender(fake_feishu)
    with pytest.raises(PermanentSendError) as e:
        s.group_disband("oc_person")
    assert e.value.errcode == 232017 and not group_gone(s, e.value)
    with pytest.raises(PermanentSendError) as e:
        s.group_disband("oc_out")
    assert e.value.errcode == 232011
    no_scope = FakeFeishu(operate_as_owner=False).start()
    try:
        no_scope.add_chat("oc_c", "机器人建的群", OWNER, [], created_by_bot=True)
        with pytest.raises(PermanentSendError) as e:
            _sender(no_scope).group_disband("oc_c")
        assert e.value.errcode == 232017  # creator without im:chat:operate_as_owner
    finally:
        no_scope.stop()


def test_group_create_makes_the_person_owner_and_is_retry_safe(fake_feishu):
    s = _sender(fake_feishu)
    # 建群 hands the accounts (identity.account_ids) and gets Feishu's chat id back
    gid = s.group_create("秋粮收购专班", OWNER, ["ou_a", "ou_b"])
    assert gid.startswith("oc_")
    chat = fake_feishu.chats[gid]
    assert chat.owner == OWNER and set(chat.members) == {OWNER, "ou_a", "ou_b"} and chat.created_by_bot
    [call] = fake_feishu.calls_to("POST", "/im/v1/chats")
    assert call.query["user_id_type"] == "open_id" and "set_bot_manager" not in call.query
    assert s.group_create("秋粮收购专班", OWNER, ["ou_a", "ou_b"]) == gid
    assert len(fake_feishu.chats) == 1
    big = s.group_create("大专班", OWNER, [f"ou_{i}" for i in range(70)])
    assert len(fake_feishu.chats[big].members) == 71


def test_every_call_goes_to_the_configured_host(fake_feishu):
    fake_feishu.add_chat("oc_1", "群", OWNER, ["ou_a"], created_by_bot=True)
    s = _sender(fake_feishu)
    s.send_text(["feishu:ou_a"], "x")
    s.list_groups()
    s.group_notice("oc_1", "最后通知")
    paths = {c.path for c in fake_feishu.calls}
    assert "/auth/v3/tenant_access_token/internal" in paths and "/im/v1/messages" in paths
    assert s.client._config.domain == fake_feishu.domain  # the SDK builds every URL from it


def test_cards_render_for_feishu():
    card = feishu_card(pulse_card("pulse:x"))
    assert card["header"]["title"]["content"] == "本周工作群给您带来的负担？"
    note = feishu_card({"replace_name": "已收到，谢谢（匿名）"})
    assert note["elements"] == [{"tag": "div", "text": {"tag": "plain_text", "content": "已收到，谢谢（匿名）"}}]
    native = {"elements": [], "header": {}}
    assert feishu_card(native) is native
