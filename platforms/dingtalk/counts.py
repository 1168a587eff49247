"""专属钉钉: one day's per-group message counts and the groups' last-active times, keyed by the
stored group id (``dingtalk:<openConversationId>``, as the robot callback and 建群 store it).

``activeGroups`` (``GET /v1.0/exclusive/data/activeGroups``, model
``GetGroupActiveInfoResponseBodyData`` in ``alibabacloud-dingtalk``) gives, per active group and
day, ``sendMessageCnt1d`` — but identifies the group by ``dingGroupId``, not by its
openConversationId. ``orgGroupInfos`` (``SearchOrgInnerGroupInfoResponseBodyItems``) gives every
group's ``openConversationId`` with ``groupLastActiveTime``. The two are joined on
(``groupName``, ``groupCreateTime``), both present in both answers; a row that matches no group or
more than one is skipped and counted (an inference from the two models: DingTalk documents no
shared id). ``statDate`` is sent as ``yyyyMMdd`` (inferred from the API's examples).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime

from platforms.dingtalk.sender import PLATFORM, from_millis
from storage.repo import scoped_id

log = logging.getLogger("qunzhi.dingtalk.counts")


@dataclass(frozen=True)
class DayCounts:
    day: date
    counts: dict[str, int]              # stored group id → messages that day
    last_active: dict[str, datetime]    # stored group id → last-active time
    unmatched: int                      # activeGroups rows no single group matched


def _key(row: dict) -> tuple[str, str]:
    return (str(row.get("groupName") or ""), str(row.get("groupCreateTime") or ""))


def fetch_day(sender, day: date, *, infos: list[dict] | None = None) -> DayCounts:
    """The counts of ``day`` (and, from ``orgGroupInfos``, the last-active times)."""
    infos = sender.org_group_infos() if infos is None else infos
    by_key: dict[tuple[str, str], list[str]] = {}
    last_active: dict[str, datetime] = {}
    for item in infos:
        cid = item.get("openConversationId")
        if not cid:
            continue
        gid = scoped_id(PLATFORM, str(cid))
        by_key.setdefault(_key(item), []).append(gid)
        at = from_millis(item.get("groupLastActiveTime"))
        if at is not None:
            last_active[gid] = at
    counts: dict[str, int] = {}
    unmatched = 0
    for row in sender.active_groups(day):
        cids = by_key.get(_key(row), [])
        n = row.get("sendMessageCnt1d")
        if len(cids) != 1 or isinstance(n, bool) or not isinstance(n, (int, str)) or not str(n).isdigit():
            unmatched += 1
            continue
        counts[cids[0]] = counts.get(cids[0], 0) + int(n)
    if unmatched:
        log.warning("dingtalk activeGroups %s: %d row(s) matched no single group by name and creation time",
                    day.isoformat(), unmatched)
    return DayCounts(day=day, counts=counts, last_active=last_active, unmatched=unmatched)
