"""The answer to a reconciliation question (台账核对, ``storage.reconcile.ask_reviews``): one tap,
``确认 1`` (candidate 1 is the ledger entry's group: they become one group) or ``不是`` (none of
them: never proposed again). The pending question is a ``Conversation`` with intent
``reconcile_review`` holding the reviewer's open items; after an answer the next item is asked.
"""
from __future__ import annotations

import logging
import re

from governance.dates import cn_int
from governance.events import Reply
from handlers.context import Context
from handlers.registry import conversation
from storage import reconcile
from storage.models import Conversation, Group

log = logging.getLogger("qunzhi.reconcile")

_CONFIRM = re.compile(r"^(?:确认|是|就是)\s*第?\s*([0-9一二两三四五六七八九十]+)\s*(?:个|号)?$")
_NONE = ("不是", "都不是", "全都不是", "都不对", "不对")
_LATER = ("稍后", "以后再说", "取消", "算了", "退出")


def _next(ctx: Context, conv: Conversation, items: list[dict], done: str) -> Reply:
    items = reconcile.open_items(ctx.session, items)
    if not items:
        ctx.session.delete(conv)
        return Reply(f"{done}台账核对已全部处理完。")
    conv.data, conv.updated_at = {"items": items}, ctx.now
    return Reply(f"{done}\n{reconcile.question(ctx.session, items[0], left=len(items))}")


@conversation(reconcile.INTENT)
def reconcile_answer(ctx: Context, conv: Conversation) -> Reply:
    text = ctx.text.strip()
    items = reconcile.open_items(ctx.session, list((conv.data or {}).get("items") or []))
    if text in _LATER:
        ctx.session.delete(conv)
        return Reply("好的，暂不处理。待确认的台账核对可在看板“台账核对”页处理。")
    if not items:
        ctx.session.delete(conv)
        return Reply("台账核对已全部处理完，无需再回复。")
    item = items[0]
    entry = ctx.session.get(Group, item["ledger_id"])
    if not reconcile.may_review(ctx.person, entry.unit if entry else None):
        log.warning("reconcile answer refused: %s may not review %s", ctx.person.id, item["ledger_id"])
        ctx.session.delete(conv)
        return Reply("您不是这条台账记录所属单位的管理员，不能确认。已交由管理员在看板处理。")
    m = _CONFIRM.match(text)
    if m is not None:
        try:
            n = cn_int(m.group(1))
        except ValueError:
            n = 0
        if not 1 <= n <= len(item["candidates"]):
            return Reply(f"没有第{m.group(1)}个，请回复“确认 1”至“确认 {len(item['candidates'])}”，或“不是”。")
        gid = item["candidates"][n - 1]
        try:
            g = reconcile.link(ctx.session, item["ledger_id"], gid, actor=ctx.person.id, now=ctx.now,
                               settings=ctx.settings)
        except reconcile.ReconcileError as e:
            return _next(ctx, conv, items[1:], f"没有对应：{e}")
        return _next(ctx, conv, items[1:], f"已确认：台账中的“{entry.name}”就是“{g.name}”，两者已合为一个群。")
    if text in _NONE:
        try:
            reconcile.reject(ctx.session, item["ledger_id"], item["candidates"], actor=ctx.person.id, now=ctx.now)
        except reconcile.ReconcileError as e:
            return _next(ctx, conv, items[1:], f"没有记录：{e}")
        return _next(ctx, conv, items[1:], f"已记录：台账中的“{entry.name}”不是这些群，今后不再询问。")
    return Reply("请回复“确认 1”或“不是”（回复“稍后”暂不处理）。\n"
                 + reconcile.question(ctx.session, item, left=len(items)))
