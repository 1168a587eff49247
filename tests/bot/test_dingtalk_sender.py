"""DingTalkSender against the fake DingTalk: scene groups through GroupOps, messages, pages, the
token, rate limits and DingTalk's error codes mapped to the outbox's errors; no call leaves the
configured hosts."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from platforms.base import GroupOps, PermanentSendError, TransientSendError
from platforms.dingtalk.sender import DingTalkSender
from tests.conftest import make_settings
from tests.fakes.fake_dingtalk import APP_KEY, APP_SECRET, OWNER_NOT_VISIBLE


@pytest.fixture
def sender(fake_dingtalk):
    s = make_settings(dingtalk_app_key=APP_KEY, dingtalk_app_secret=APP_SECRET, dingtalk_api_base=fake_dingtalk.url,
                      dingtalk_oapi_base=fake_dingtalk.url, dingtalk_scene_template_id="tpl-1",
                      dingtalk_operator_user_id="admin1")
    return DingTalkSender(s, timeout=5)


def test_it_is_a_group_ops(sender):
    assert isinstance(sender, GroupOps)


def test_scene_group_lifecycle_through_group_ops(sender, fake_dingtalk):
    cid = sender.group_create("秋粮收购专班", "zhangsan", ["lisi", "wangwu"])
    g = fake_dingtalk.groups[cid]
    assert (g.title, g.owner, g.members) == ("秋粮收购专班", "zhangsan", {"zhangsan", "lisi", "wangwu"})
    create = fake_dingtalk.called("/topapi/im/chat/scenegroup/create")[0]
    assert create.json["template_id"] == "tpl-1" and create.json["owner_user_id"] == "zhangsan"
    sender.group_notice(cid, "本群将于7天后解散")
    assert fake_dingtalk.messages[-1] == {"group": cid, "key": "sampleText", "param": {"content": "本群将于7天后解散"}}
    snapshot = sender.group_members(cid)
    assert snapshot == {"zhangsan", "lisi", "wangwu"}
    sender.group_remove(cid, ["lisi", "wangwu"])
    sender.group_rename(cid, "[已解散]秋粮收购专班")
    assert (g.members, g.title) == ({"zhangsan"}, "[已解散]秋粮收购专班")
    sender.group_add(cid, sorted(snapshot - {"zhangsan"}))  # the restore
    sender.group_rename(cid, "秋粮收购专班")
    assert (g.members, g.title) == ({"zhangsan", "lisi", "wangwu"}, "秋粮收购专班")
    sender.group_disband(cid)  # the purge
    assert g.disbanded
    with pytest.raises(PermanentSendError):
        sender.group_disband(cid)  # already gone: DingTalk's 400, not retried


def test_members_are_read_page_by_page(sender, fake_dingtalk):
    fake_dingtalk.add_group("cidBig==", "大群", "owner", {f"u{i:03d}" for i in range(250)})
    assert len(sender.group_members("cidBig==")) == 251
    pages = fake_dingtalk.called("/topapi/im/chat/scenegroup/member/get")
    assert [c.json["cursor"] for c in pages] == [0, 100, 200]


def test_member_changes_go_in_batches(sender, fake_dingtalk):
    fake_dingtalk.add_group("cidB==", "群", "owner", {f"u{i}" for i in range(45)})
    sender.group_remove("cidB==", [f"u{i}" for i in range(45)])
    assert len(fake_dingtalk.called("/topapi/im/chat/scenegroup/member/delete")) == 3
    assert fake_dingtalk.groups["cidB=="].members == {"owner"}


def test_an_ordinary_group_is_refused_for_good(sender, fake_dingtalk):
    fake_dingtalk.add_group("cidPlain==", "普通群", "owner", {"a"}, scene=False)
    for call in (lambda: sender.group_remove("cidPlain==", ["a"]), lambda: sender.group_rename("cidPlain==", "x"),
                 lambda: sender.group_disband("cidPlain==")):
        with pytest.raises(PermanentSendError):
            call()
    assert fake_dingtalk.groups["cidPlain=="].members == {"a", "owner"} and not fake_dingtalk.groups["cidPlain=="].disbanded


def test_owner_outside_the_apps_visible_range(sender, fake_dingtalk):
    fake_dingtalk.visible = {"lisi"}
    with pytest.raises(PermanentSendError) as e:
        sender.group_create("专班", "zhangsan", ["lisi"])
    assert e.value.errcode == OWNER_NOT_VISIBLE and "群主不在应用可见性内" in str(e.value)
    assert fake_dingtalk.groups == {}
    from platforms.dingtalk.sender import explain

    assert explain(e.value).startswith("群主不在钉钉应用的可见范围内") and "errcode" not in explain(e.value)


def test_no_template_no_create(fake_dingtalk):
    s = make_settings(dingtalk_app_key=APP_KEY, dingtalk_app_secret=APP_SECRET, dingtalk_api_base=fake_dingtalk.url,
                      dingtalk_oapi_base=fake_dingtalk.url)
    with pytest.raises(PermanentSendError):
        DingTalkSender(s).group_create("专班", "zhangsan", [])
    assert fake_dingtalk.called("/topapi/im/chat/scenegroup/create") == []


def test_list_groups_is_not_offered(sender, fake_dingtalk):
    from platforms.dingtalk import CAPABILITIES

    assert CAPABILITIES.list_groups is False and CAPABILITIES.purge and CAPABILITIES.create
    with pytest.raises(PermanentSendError):
        sender.list_groups()


@pytest.mark.parametrize("classic", [True, False])
def test_rate_limits_are_transient(sender, fake_dingtalk, classic):
    fake_dingtalk.add_group("cidR==", "群", "owner", {"a"})
    sender.refresh_token()
    fake_dingtalk.throttle_next(1)
    with pytest.raises(TransientSendError) as e:
        sender.group_rename("cidR==", "x") if classic else sender.group_disband("cidR==")
    assert e.value.rate_limited
    assert fake_dingtalk.groups["cidR=="].title == "群" and not fake_dingtalk.groups["cidR=="].disbanded
    sender.group_rename("cidR==", "x") if classic else sender.group_disband("cidR==")  # next time it works


def test_outage_is_transient(sender, fake_dingtalk):
    sender.refresh_token()
    fake_dingtalk.fail_next(1, 503)
    with pytest.raises(TransientSendError) as e:
        sender.send_text(["a"], "hi")
    assert e.value.http_status == 503 and fake_dingtalk.messages == []


@pytest.mark.parametrize("path", ["classic", "new"])
def test_an_expired_token_is_refreshed_once(sender, fake_dingtalk, path):
    fake_dingtalk.add_group("cidT==", "群", "owner", {"a"})
    sender.refresh_token()
    fake_dingtalk.expire_token()
    if path == "classic":
        assert sender.group_members("cidT==") == {"a", "owner"}
    else:
        sender.send_text(["a"], "你好")
        assert fake_dingtalk.messages[-1]["to"] == ["a"]
    assert len(fake_dingtalk.called("/v1.0/oauth2/accessToken")) == 2


def test_wrong_secret_is_permanent(fake_dingtalk):
    s = make_settings(dingtalk_app_key=APP_KEY, dingtalk_app_secret="wrong-secret-xxxxxxxx",
                      dingtalk_api_base=fake_dingtalk.url, dingtalk_oapi_base=fake_dingtalk.url)
    with pytest.raises(PermanentSendError):
        DingTalkSender(s).send_text(["a"], "hi")
    assert fake_dingtalk.messages == []


def test_every_call_goes_to_the_configured_hosts(sender, fake_dingtalk):
    fake_dingtalk.add_group("cidH==", "群", "owner", {"a"})
    sender.send_text(["a"], "t")
    sender.send_markdown(["a"], "# t")
    sender.group_members("cidH==")
    sender.group_notice("cidH==", "t")
    host = urlsplit(fake_dingtalk.url).netloc
    assert fake_dingtalk.calls and all(c.headers.get("host") == host for c in fake_dingtalk.calls)


def test_activity_pages(sender, fake_dingtalk):
    from datetime import date

    fake_dingtalk.active["20261122"] = [{"dingGroupId": f"d{i}", "groupName": f"群{i}", "sendMessageCnt1d": i,
                                         "statDate": "20261122"} for i in range(230)]
    rows = sender.active_groups(date(2026, 11, 22))
    assert len(rows) == 230
    assert [c.query["pageNumber"] for c in fake_dingtalk.called("/v1.0/exclusive/data/activeGroups")] == ["1", "2", "3"]
    fake_dingtalk.org_groups = [{"openConversationId": f"cid{i}==", "groupName": f"群{i}"} for i in range(150)]
    assert len(sender.org_group_infos()) == 150
    assert [c.query["pageStart"] for c in fake_dingtalk.called("/v1.0/exclusive/securities/orgGroupInfos")] == ["0",
                                                                                                              "100"]
