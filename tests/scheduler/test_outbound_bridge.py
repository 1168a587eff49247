"""Bridge instructions and messages leave through the outbox: POSTed, signed, to QUNZHI_BRIDGE_URL
(a fake bridge on localhost checks the signature), retried on 5xx, given up on 4xx, and a repeat
after a crash is dropped by the bridge thanks to its instruction_id."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.fakes.crashing import CrashAfterSend
from sqlalchemy import select

from scheduler.outbox import Dispatcher
from scheduler.routing import build_senders
from platforms.capabilities import table
from storage import lifecycle, repo
from storage.models import Group, OutboxMessage
from storage.outbox import enqueue
from tests.conftest import make_settings


class Crash(BaseException):
    """The process dying after the bridge accepted, before the outcome is committed."""


def _settings(fake_bridge, **kw):
    return make_settings(bridge_url=fake_bridge.url, **kw)


def _dispatcher(db, settings, clock, *, crash=None, **kw):
    senders = build_senders(settings)
    if crash is not None:  # the process dies right after the bridge accepted
        senders = {c: CrashAfterSend(x, crash) for c, x in senders.items()}
    return Dispatcher(db, senders, clock=clock, workers=2, global_per_second=None, **kw)


def _bridge_group(db, clock, gid="wechat:wxg-1"):
    with db.session() as s:
        g = repo.ensure_group(s, group_id=gid, platform="wechat", at=clock(), name="秋粮收购群")
        repo.add_members(s, gid, ["wechat:zhang", "wechat:li"], clock())
        # warned, and the grace since the warning went out has passed: a dissolution may begin
        g.status, g.warned_at, g.warning_sent_at = "warned", clock() - timedelta(days=9), clock() - timedelta(days=8)


def _rows(db):
    with db.session() as s:
        return s.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars().all()


def test_instructions_and_messages_are_posted_signed_with_their_instruction_id(db, clock, fake_bridge):
    settings = _settings(fake_bridge)
    _bridge_group(db, clock)
    with db.session() as s:
        method = lifecycle.begin_dissolution(s, s.get(Group, "wechat:wxg-1"), clock(), settings, actor="test",
                                             capabilities=table(settings),
                                             reason="长期无工作消息")
        assert method == "bridge"
        enqueue(s, channel="bridge", recipient="wechat:wxg-1", kind="reply", payload={"text": "群里说一句"}, at=clock())
        enqueue(s, channel="bridge", recipient="wechat:zhang", kind="warning", payload={"text": "您的群将解散"},
                at=clock())
    d = _dispatcher(db, settings, clock)
    assert d.drain() == 3
    d.close()
    assert fake_bridge.refused == [] and len(fake_bridge.calls) == 3  # every POST verified by the fake
    got = sorted(fake_bridge.carried_out, key=lambda j: j["type"])
    dissolve, say_group, say_user = got[0], *sorted(got[1:], key=lambda j: "user_id" in j)
    with db.session() as s:
        iid = s.get(Group, "wechat:wxg-1").dissolve_state["instruction_id"]
    assert dissolve == {"type": "dissolve", "group_id": "wxg-1", "platform": "wechat", "instruction_id": iid}
    assert say_group["group_id"] == "wxg-1" and say_group["text"] == "群里说一句"
    assert say_user["user_id"] == "zhang" and say_user["text"] == "您的群将解散" and "group_id" not in say_user
    rows = _rows(db)
    assert [r.status for r in rows] == ["sent"] * 3
    assert {r.provider_id for r in rows} == {iid, f"outbox-{rows[1].id}", f"outbox-{rows[2].id}"}


def test_5xx_is_retried_with_backoff_and_delivered_once(db, clock, fake_bridge):
    settings = _settings(fake_bridge)
    with db.session() as s:
        enqueue(s, channel="bridge", recipient="wechat:wxg-1", kind="reply", payload={"text": "你好"}, at=clock())
    fake_bridge.status_next(2, 503)
    d = _dispatcher(db, settings, clock)
    d.run_once()
    [row] = _rows(db)
    assert row.status == "pending" and row.next_attempt_at > clock() and "503" in row.last_error
    assert d.run_once() == 0  # backing off
    for _ in range(4):
        clock.advance(minutes=5)
        d.run_once()
    d.close()
    [row] = _rows(db)
    assert row.status == "sent" and row.attempts == 3
    assert d.stats.retried == 2 and d.stats.sent == 1
    assert len(fake_bridge.calls) == 3 and len(fake_bridge.carried_out) == 1


def test_4xx_is_a_permanent_failure_recorded(db, clock, fake_bridge):
    settings = _settings(fake_bridge)
    with db.session() as s:
        enqueue(s, channel="bridge", recipient="wechat:wxg-1", kind="bridge_dissolve", at=clock(),
                payload={"type": "dissolve", "group_id": "wechat:wxg-1", "instruction_id": "dis-1",
                         "platform": "wechat"})
    fake_bridge.status_next(1, 400)
    d = _dispatcher(db, settings, clock)
    d.drain()
    clock.advance(hours=2)
    d.drain()
    d.close()
    [row] = _rows(db)
    assert row.status == "dead" and "HTTP 400" in row.last_error and row.attempts == 1
    assert d.stats.dead == 1 and fake_bridge.carried_out == [] and len(fake_bridge.calls) == 1


def test_a_wrong_secret_is_refused_by_the_bridge_and_not_retried_forever(db, clock, fake_bridge):
    settings = _settings(fake_bridge, bridge_secret="not-the-bridge-secret")
    with db.session() as s:
        enqueue(s, channel="bridge", recipient="wechat:wxg-1", kind="reply", payload={"text": "你好"}, at=clock())
    d = _dispatcher(db, settings, clock)
    d.drain()
    d.close()
    assert [r.status for r in _rows(db)] == ["dead"] and len(fake_bridge.refused) == 1


def test_a_crash_after_the_bridge_accepted_resends_and_the_bridge_drops_the_repeat(db, clock, fake_bridge):
    settings = _settings(fake_bridge)
    with db.session() as s:
        enqueue(s, channel="bridge", recipient="wechat:wxg-1", kind="bridge_cancel", at=clock(),
                payload={"type": "cancel_dissolve", "group_id": "wechat:wxg-1", "instruction_id": "dis-7",
                         "platform": "wechat"})


    d = _dispatcher(db, settings, clock, crash=Crash)
    with pytest.raises(Crash):
        d.run_once()
    d.close()
    assert [r.status for r in _rows(db)] == ["sending"]
    clock.advance(minutes=5)
    d = _dispatcher(db, settings, clock)
    d.drain()
    d.close()
    assert [r.status for r in _rows(db)] == ["sent"]  # resent (the bridge deduplicates), not parked
    assert len(fake_bridge.calls) == 2 and fake_bridge.repeats == 1
    assert [i["instruction_id"] for i in fake_bridge.carried_out] == ["dis-7"]


def test_without_a_bridge_url_bridge_rows_are_reported_unreachable(db, clock, caplog):
    settings = make_settings(bridge_url="")
    with db.session() as s:
        enqueue(s, channel="bridge", recipient="wechat:wxg-1", kind="reply", payload={"text": "你好"}, at=clock())
    d = _dispatcher(db, settings, clock)
    with caplog.at_level("WARNING", logger="qunzhi.outbox"):
        assert d.drain() == 1
    d.close()
    [row] = _rows(db)
    assert row.status == "unreachable" and "QUNZHI_BRIDGE_URL" in row.last_error
    assert d.stats.unreachable == 1 and "unreachable" in caplog.text


def test_build_senders_per_deployment(fake_bridge):
    none = make_settings(wecom_corp_id="", wecom_token="", wecom_aes_key="", aibot_token="", aibot_aes_key="",
                         bridge_secret="")
    assert build_senders(none) == {}
    bridge_only = make_settings(wecom_corp_id="", wecom_token="", wecom_aes_key="", aibot_token="",
                                aibot_aes_key="", bridge_url=fake_bridge.url)
    assert set(build_senders(bridge_only)) == {"bridge"}
    aibot_only = make_settings(wecom_corp_id="", wecom_token="", wecom_aes_key="", bridge_secret="")
    assert set(build_senders(aibot_only)) == {"aibot"}
    senders = build_senders(make_settings(bridge_url=fake_bridge.url))
    assert set(senders) == {"user", "appchat", "card_update", "aibot", "bridge"}
    assert senders["bridge"].url == fake_bridge.url
    assert senders["user"] is senders["appchat"] is senders["card_update"]


def test_the_outbox_command_lists_unreachable_rows_and_requeues_them(db, clock, monkeypatch):
    import bot.cli
    from typer.testing import CliRunner

    from bot.runtime import Runtime

    with db.session() as s:
        enqueue(s, channel="bridge", recipient="wechat:wxg-1", kind="reply", payload={"text": "你好"}, at=clock())
    d = _dispatcher(db, make_settings(bridge_url=""), clock)
    d.drain()
    d.close()
    [row] = _rows(db)
    monkeypatch.setattr(bot.cli, "runtime", lambda: Runtime(make_settings(database_url=db.url), db=db, clock=clock))
    r = CliRunner().invoke(bot.cli.app, ["scheduler", "--outbox"])
    assert r.exit_code == 0, r.output
    assert "无法送达\t1" in r.output and f"#{row.id} → wechat:wxg-1" in r.output and "QUNZHI_BRIDGE_URL" in r.output
    r = CliRunner().invoke(bot.cli.app, ["scheduler", "--requeue", str(row.id)])
    assert r.exit_code == 0, r.output
    assert [x.status for x in _rows(db)] == ["pending"]
