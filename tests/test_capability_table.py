"""The README's capability table is the one the platforms' declarations generate, so it stays true
(regenerate: ``.venv/bin/python -c 'from platforms.capabilities import markdown_table; print(markdown_table())'``
and paste it between the markers)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from governance.capabilities import Capabilities
from governance.lifecycle import APPCHAT
from platforms.capabilities import CAPABILITY_TABLE_END, CAPABILITY_TABLE_START, capability_row, markdown_table
from platforms.registry import all_platforms

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_table_matches_the_declarations():
    text = README.read_text(encoding="utf-8")
    assert CAPABILITY_TABLE_START in text and CAPABILITY_TABLE_END in text
    block = text.split(CAPABILITY_TABLE_START, 1)[1].split(CAPABILITY_TABLE_END, 1)[0].strip()
    assert block == markdown_table()
    assert len(block.splitlines()) == 2 + len(all_platforms())  # one row per registered platform


def test_rows_follow_the_capabilities():
    soft = Capabilities(APPCHAT, remove_members=True, rename=True, restore=True, purge=True, create=True,
                        list_groups=True, activity="full")
    row = capability_row("飞书", soft)
    assert row[1] == "全部消息" and row[4].startswith("在平台上真正解散") and row[5].startswith("可以")
    assert capability_row("x", replace(soft, purge=False))[4].startswith("平台没有解散接口")
    assert capability_row("x", replace(soft, create=False, list_groups=False))[5:] == ("不可以", "不支持")
    # a platform whose bot removes members and renames gets the soft dissolve, whatever its method code
    assert capability_row("x", Capabilities("feishu", remove_members=True, rename=True))[2].startswith("发最后通知")
