"""SIGKILL ``qunzhi sweep --apply`` while it soft-dissolves groups on Feishu or DingTalk (the
platform steps: final notice, members removed, renamed ``[已解散]…``), then run it again.

The fake platform is a long-lived HTTP server in the test process; the sweep subprocess reaches it
through its settings (QUNZHI_FEISHU_DOMAIN, QUNZHI_DINGTALK_API_BASE/OAPI_BASE). The kill lands
once the fake has recorded N/3 calls of one step (notice, removal or rename: a case each), so
some groups are done, one may be between two steps, the rest untouched. Oracle: after the rerun
every group is dissolved exactly once (one ``dissolve_intent``, one ``dissolve`` record, each step
recorded once), the platform's chat is emptied down to its owner and renamed with the prefix once,
the audit chain verifies, and a third run changes nothing. Only the final notice is at-least-once
(scheduler/lifecycle.py): Feishu's message uuid makes it arrive once; on DingTalk at most the one
group in flight may get it twice. QUNZHI_FAULT_PLATFORM_GROUPS sets the number of groups (default 30);
CI kills after the removals only, the heavy run (QUNZHI_FAULT_ALL_STEPS=1) after each step."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from benchmarks.ingest import qunzhi_cmd
from governance.lifecycle import DISSOLVE_STEPS
from storage import audit
from storage.models import AuditRecord, Group
from tests.fakes.fake_dingtalk import APP_KEY, APP_SECRET as DT_SECRET, FakeDingTalk
from tests.fakes.fake_feishu import APP_ID, APP_SECRET as FS_SECRET, FakeFeishu
from tests.feishu.helpers import ENCRYPT_KEY, VERIFICATION_TOKEN
from tests.lifecycle.helpers import NOW, group, seed_people

N = int(os.environ.get("QUNZHI_FAULT_PLATFORM_GROUPS", "30"))
# every kill point in the heavy run (benchmarks/run_heavy.py); CI keeps the middle one
KILL_POINTS = DISSOLVE_STEPS if os.environ.get("QUNZHI_FAULT_ALL_STEPS") else ("remove",)
AS_OF = "2026-11-23"
PREFIX = "[已解散]"


class Feishu:
    name = "feishu"

    def __init__(self):
        self.fake = FakeFeishu().start()
        self.fake.page_size = 100

    def env(self) -> dict[str, str]:
        return dict(QUNZHI_FEISHU_APP_ID=APP_ID, QUNZHI_FEISHU_APP_SECRET=FS_SECRET,
                    QUNZHI_FEISHU_ENCRYPT_KEY=ENCRYPT_KEY, QUNZHI_FEISHU_VERIFICATION_TOKEN=VERIFICATION_TOKEN,
                    QUNZHI_FEISHU_DOMAIN=self.fake.domain)

    def chat_id(self, i: int) -> str:
        return f"oc_fault{i:06d}"

    def account(self, tag: str) -> str:
        return f"ou_{tag}"

    def add(self, chat: str, name: str, owner: str, members: list[str]) -> None:
        self.fake.add_chat(chat, name, owner, members, created_by_bot=True)

    def taken(self, step: str) -> int:
        """How many calls of a dissolution step the fake has recorded."""
        if step == "notice":
            return len([c for c in self.fake.calls_to("POST", "/im/v1/messages")
                        if c.query.get("receive_id_type") == "chat_id"])
        if step == "remove":
            return len([c for c in self.fake.calls_to("DELETE", "/im/v1/chats/") if c.path.endswith("/members")])
        return len(self.fake.calls_to("PUT", "/im/v1/chats/"))

    def chat(self, chat: str) -> tuple[str, set[str], bool]:
        c = self.fake.chats[chat]
        return c.name, set(c.members), c.dissolved

    def notices(self) -> Counter:
        return Counter(m["receive_id"] for m in self.fake.messages if m["receive_id_type"] == "chat_id")

    def stop(self):
        self.fake.stop()


class DingTalk:
    name = "dingtalk"

    def __init__(self):
        self.fake = FakeDingTalk().start()

    def env(self) -> dict[str, str]:
        return dict(QUNZHI_DINGTALK_APP_KEY=APP_KEY, QUNZHI_DINGTALK_APP_SECRET=DT_SECRET,
                    QUNZHI_DINGTALK_API_BASE=self.fake.url, QUNZHI_DINGTALK_OAPI_BASE=self.fake.url,
                    QUNZHI_DINGTALK_SCENE_TEMPLATE_ID="tpl-1")

    def chat_id(self, i: int) -> str:
        return f"cidFault{i:06d}=="

    def account(self, tag: str) -> str:
        return f"u{tag}"

    def add(self, chat: str, name: str, owner: str, members: list[str]) -> None:
        self.fake.add_group(chat, name, owner, set(members))

    def taken(self, step: str) -> int:
        """How many calls of a dissolution step the fake has recorded."""
        return len(self.fake.called({"notice": "/v1.0/robot/groupMessages/send",
                                     "remove": "/topapi/im/chat/scenegroup/member/delete",
                                     "rename": "/topapi/im/chat/scenegroup/update"}[step]))

    def chat(self, chat: str) -> tuple[str, set[str], bool]:
        g = self.fake.groups[chat]
        return g.title, set(g.members), g.disbanded

    def notices(self) -> Counter:
        return Counter(m["group"] for m in self.fake.messages if "group" in m)

    def stop(self):
        self.fake.stop()


@pytest.fixture(params=["feishu", "dingtalk"])
def platform(request):
    p = Feishu() if request.param == "feishu" else DingTalk()
    yield p
    p.stop()


def _seed(db, p) -> dict[str, tuple[str, str, str]]:
    """N warned groups past their grace period, each a chat on the fake: gid → (chat, name, owner)."""
    out = {}
    with db.session() as s:
        seed_people(s)
        for i in range(N):
            chat, name = p.chat_id(i), f"专班群{i}"
            owner = p.account(f"owner{i}")
            members = [p.account(f"m{i}{x}") for x in "abc"]
            gid = f"{p.name}:{chat}"
            g = group(s, gid, name, platform=p.name, owner=f"{p.name}:{owner}", idle_days=60,
                      members=[f"{p.name}:{m}" for m in (owner, *members)])
            g.status, g.warned_at, g.warning_sent_at = "warned", NOW - timedelta(days=9), NOW - timedelta(days=8)
            p.add(chat, name, owner, members)
            out[gid] = (chat, name, owner)
    return out


def _env(db, p) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUNZHI_")}
    env.update(QUNZHI_DATABASE_URL=db.url, QUNZHI_ENVIRONMENT="development", QUNZHI_WECOM_CORP_ID="",
               QUNZHI_WECOM_SECRET="", **p.env())
    return env


def _sweep(db, p, tmp_path, *, kill_after: tuple[str, int] | None = None) -> int:
    proc = subprocess.Popen(qunzhi_cmd() + ["sweep", "--apply", "--as-of", AS_OF], env=_env(db, p), cwd=str(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    if kill_after is None:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-3000:]
        return 0
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if p.taken(kill_after[0]) >= kill_after[1]:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.001)
    proc.wait(30)
    proc.stderr.close()
    return proc.returncode


def _groups(db) -> dict[str, tuple]:
    with db.session() as s:
        return {g.id: (g.status, g.dissolve_method, tuple((g.dissolve_state or {}).get("done") or ()))
                for g in s.execute(select(Group).where(Group.platform.in_(("feishu", "dingtalk")))).scalars()}


def _actions(db) -> Counter:
    with db.session() as s:
        return Counter(s.execute(select(AuditRecord.group_id, AuditRecord.action)).all())


def _audit_count(db) -> int:
    with db.session() as s:
        return s.execute(select(func.count()).select_from(AuditRecord)).scalar_one()


@pytest.mark.parametrize("kill_on", KILL_POINTS)
def test_sigkill_mid_platform_steps_then_rerun_dissolves_each_group_once(db, platform, tmp_path, kill_on):
    """``kill_on``: the kill lands once the fake has seen N/3 calls of that step (right after
    a notice is the at-least-once case; after a removal or a rename, the step may be done on the
    platform but not yet recorded)."""
    p = platform
    seeded = _seed(db, p)
    t0 = time.monotonic()

    rc = _sweep(db, p, tmp_path, kill_after=(kill_on, max(1, N // 3)))
    assert rc == -signal.SIGKILL, f"the kill landed before the sweep finished (rc {rc})"
    mid = _groups(db)
    statuses = Counter(st for st, _, _ in mid.values())
    assert statuses["dissolving"] >= 1, f"the kill left platform steps to do: {statuses}"
    for gid, (status, method, done) in mid.items():  # nothing out of order, nothing recorded twice
        assert method == "appchat", (gid, method)
        assert done == DISSOLVE_STEPS[:len(done)], (gid, done)
        assert (status == "dissolved") == (done == DISSOLVE_STEPS), (gid, status, done)
    with db.session() as s:
        assert audit.verify(s).ok, "the chain verifies after the kill"

    _sweep(db, p, tmp_path)  # the restart: the sweep takes only the steps left
    groups = _groups(db)
    assert groups == {gid: ("dissolved", "appchat", DISSOLVE_STEPS) for gid in seeded}, \
        {g: v for g, v in groups.items() if v != ("dissolved", "appchat", DISSOLVE_STEPS)}
    actions = _actions(db)
    for gid in seeded:
        assert actions[(gid, "dissolve_intent")] == 1 and actions[(gid, "dissolve")] == 1, \
            {a: n for (g, a), n in actions.items() if g == gid}
    with db.session() as s:
        assert audit.verify(s).ok, "the audit chain verifies"

    # the platform's side: each chat emptied down to its owner and renamed once, not disbanded
    for gid, (chat, name, owner) in seeded.items():
        assert p.chat(chat) == (PREFIX + name, {owner}, False), (gid, p.chat(chat))
    notices = p.notices()
    assert set(notices) == {chat for chat, _, _ in seeded.values()}, "every group got its final notice"
    twice = [c for c, n in notices.items() if n > 1]
    if p.name == "feishu":
        assert twice == [], "Feishu's message uuid keeps a replayed notice from arriving twice"
    else:
        assert len(twice) <= 1 and max(notices.values()) <= 2, notices  # only the group in flight

    before = _audit_count(db)
    _sweep(db, p, tmp_path)  # a third run does nothing more
    assert _audit_count(db) == before and _groups(db) == groups
    assert time.monotonic() - t0 < 90
