"""Property-based fuzzing (hypothesis): the command parser, the date parser, the ledger importer,
whole messages through ``handle_event`` and the callback parsers. No crash, no hang, always a
clear error. Example counts are bounded for the normal suite; QUNZHI_FUZZ_EXAMPLES raises them
(benchmarks/run_heavy.py)."""
from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings, strategies as st

from platforms.bridge.inbound import signed_headers
from platforms.wecom.crypto import encrypt_for_tests
from governance.dates import DateParseError, parse_date, parse_expiry
from handlers import registry
from handlers.context import Services
from platforms.capabilities import table
from handlers.dispatch import handle_event
from governance.events import Event, Reply
from handlers.text import normalize, split_fields
from storage.db import Database
from storage.importers import ImportFormatError, read_ledger
from tests.conftest import (AIBOT_AES_KEY, AIBOT_TOKEN, BRIDGE_SECRET, WECOM_AES_KEY, WECOM_CORP_ID,
                            WECOM_TOKEN, make_settings)

N = int(os.environ.get("QUNZHI_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=N, deadline=2000, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=max(20, N // 4), deadline=5000, suppress_health_check=list(HealthCheck))
CJK = re.compile(r"[\u4e00-\u9fff]")

# Text that looks like what cadres type: command words, dates, labels, mentions, odd Unicode.
WORDS = ["报备", "续期", "完成", "保留", "恢复", "合并", "保护", "取消保护", "看板", "帮助", "我的群", "已解散",
         "这个群没用", "取消", "用途:", "单位：", "到期:", "@群治", "＠群治助手", "３个月", "2026-13-45", "月底",
         "十二月三十一日", "一百万年", "9999999999天", "，", "、", "：", " ", "\u3000", "\u200b", "\ud7ff", "𠮷",
         "群", "「测试群」", "“测试群”", "\n", "\t", "0", "-1", "年", "个月", "号"]
chat_text = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(WORDS) | st.text(max_size=8), max_size=12).map("".join),
)


# --- command parser ------------------------------------------------------------------------------
@FUZZ
@given(chat_text)
def test_normalize_and_match_never_crash(text):
    t = normalize(text)
    assert isinstance(t, str)
    assert t == t.strip()
    found = registry.match(t)
    if found is not None:
        cmd, args = found
        assert isinstance(args, str) and len(args) <= len(t)
        assert any(t.startswith(k) for k in cmd.keywords)


@FUZZ
@given(chat_text, st.dictionaries(st.sampled_from(["用途", "目的", "单位", "到期", "类别", "群主", ":", "(", "+"]),
                                  st.sampled_from(["purpose", "unit", "expires", "category", "owner"]),
                                  min_size=1, max_size=5))
def test_split_fields_never_crashes(args, keys):
    positional, fields = split_fields(normalize(args), keys)
    assert all(isinstance(p, str) and p for p in positional)
    assert set(fields) <= set(keys.values())


# --- dates -----------------------------------------------------------------------------------------
date_text = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(["2026", "年", "月", "日", "号", "-", "/", ".", "12", "31", "0", "99", "十", "百", "两",
                              "零", "个", "周", "星期", "天", "底", "明年", "下个月", "T", ":", "Z", "+08:00",
                              "9" * 30, "〇", "一"]), max_size=10).map("".join),
)


@FUZZ
@given(date_text, st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)))
def test_dates_raise_only_date_parse_error(text, today):
    for fn in (lambda: parse_date(text), lambda: parse_expiry(text, today),
               lambda: parse_expiry(text, today, base=today + timedelta(days=30))):
        try:
            d = fn()
        except DateParseError as e:
            assert CJK.search(str(e)), str(e)  # a clear Chinese message
        else:
            assert isinstance(d, date)


# --- ledger importer ------------------------------------------------------------------------------
HEADER = "群编号,群名称,平台,群主,单位,类别,用途,建群日期,到期日期,成员\n"
csv_bytes = st.one_of(
    st.binary(max_size=2000),
    st.lists(st.lists(st.text(max_size=15) | st.sampled_from(["2026-01-01", "2026年13月1日", "", "临时群", "a;b|c",
                                                             '"', "\r", "wecom", "x" * 300]),
                      max_size=12).map(lambda r: ",".join(r)), max_size=20)
    .map(lambda rows: (HEADER + "\n".join(rows)).encode()),
    st.lists(st.text(max_size=20), max_size=20).map(lambda rows: "\n".join(rows).encode("gb18030", "replace")),
)


@FUZZ
@given(csv_bytes)
def test_ledger_reader_gives_a_result_or_a_chinese_error(raw):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "ledger.csv"
        p.write_bytes(raw)
        try:
            good, errors = read_ledger(p)
        except ImportFormatError as e:
            assert CJK.search(str(e)), str(e)
            return
        for e in errors:
            assert CJK.search(str(e)), str(e)
        assert len({r.group_id for r in good}) == len(good)


# --- whole messages through handle_event -------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_db(tmp_path_factory):
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}")
    yield db
    db.dispose()


@SLOW
@given(text=chat_text, in_group=st.booleans(), mentioned=st.booleans(), sender=st.sampled_from(["u1", "u2", "u3"]),
       n=st.integers(0, 10**9))
def test_handle_event_never_crashes(fuzz_db, text, in_group, mentioned, sender, n):
    cfg = make_settings(database_url=fuzz_db.url)
    services = Services(settings=cfg, capabilities=table(cfg),
                        clock=lambda: datetime(2026, 11, 23, 2, tzinfo=timezone.utc))
    event = Event(platform="local", kind="message", sender_id=sender, at=services.now(), text=text,
                  group_id="g-fuzz" if in_group else None, msg_id=f"fz{n}-{hash(text)}", mentioned_bot=mentioned)
    with fuzz_db.session() as s:
        replies = handle_event(s, event, services)
    assert all(isinstance(r, Reply) and isinstance(r.text, str) for r in replies)


# --- callback parsing --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_client(fuzz_db):
    from bot.app import create_app
    from bot.runtime import Runtime

    rt = Runtime(make_settings(database_url=fuzz_db.url), db=fuzz_db)
    with TestClient(create_app(runtime=rt, start_scheduler=False), raise_server_exceptions=False) as c:
        yield c
    rt.close()


def _now() -> str:
    return str(int(datetime.now(timezone.utc).timestamp()))


xmlish = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(["<xml>", "</xml>", "<Encrypt>", "</Encrypt>", "<![CDATA[", "]]>", "<MsgType>text",
                              "</MsgType>", "<FromUserName>a</FromUserName>", "<Event>template_card_event</Event>",
                              "<CreateTime>99999999999999999999</CreateTime>", "&amp;", "&#0;", "<!DOCTYPE x>",
                              "<?xml version='1.0'?>", "<SelectedItems><SelectedItem>", "\x00", "é"]),
             max_size=30).map("".join),
)
jsonish = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                       lambda c: st.lists(c, max_size=4) | st.dictionaries(
                           st.sampled_from(["msgid", "chattype", "chatid", "from", "userid", "msgtype", "text",
                                            "content", "event", "eventtype", "mixed", "msg_item", "create_time",
                                            "template_card_event", "selected_items"]) | st.text(max_size=5),
                           c, max_size=5), max_leaves=20)

ALLOWED = {200, 400, 403, 413}


ASCII = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=50)


@SLOW
@given(body=st.binary(max_size=600) | xmlish.map(str.encode), sig=ASCII, nonce=st.text(max_size=20))
def test_random_callback_bodies_are_refused_not_500(fuzz_client, body, sig, nonce):
    q = {"msg_signature": sig, "timestamp": _now(), "nonce": nonce}
    for path in ("/wecom/callback", "/wecom/aibot/callback"):
        r = fuzz_client.post(path, params=q, content=body)
        assert r.status_code in (400, 403, 413), (path, r.status_code)
    r = fuzz_client.post("/bridge/events", content=body, headers={"X-Qunzhi-Timestamp": _now(),
                                                                  "X-Qunzhi-Signature": sig})
    assert r.status_code in (400, 403, 413)


@SLOW
@given(plain=xmlish, data=jsonish, n=st.integers(0, 10**12))
def test_validly_encrypted_random_payloads_never_500(fuzz_client, plain, data, n):
    """Signed and encrypted correctly, so the parsers behind the crypto see the random plaintext."""
    ts = _now()
    enc, sig = encrypt_for_tests(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORP_ID, plain, ts, f"x{n}")
    r = fuzz_client.post("/wecom/callback", params={"msg_signature": sig, "timestamp": ts, "nonce": f"x{n}"},
                         content=f"<xml><Encrypt><![CDATA[{enc}]]></Encrypt></xml>")
    assert r.status_code in ALLOWED, r.status_code
    enc, sig = encrypt_for_tests(AIBOT_TOKEN, AIBOT_AES_KEY, "", json.dumps(data), ts, f"j{n}")
    r = fuzz_client.post("/wecom/aibot/callback", params={"msg_signature": sig, "timestamp": ts, "nonce": f"j{n}"},
                         json={"encrypt": enc})
    assert r.status_code in ALLOWED, r.status_code
    body = json.dumps(data).encode()
    r = fuzz_client.post("/bridge/events", content=body, headers=signed_headers(BRIDGE_SECRET, ts, body))
    assert r.status_code in ALLOWED, r.status_code
