"""`qunzhi demo`: a simulated county (modelled on the articles in shared/seeds) run for twelve
weeks through the real handlers, sweep, notices, outbox dispatcher and digest, with owners who
answer some of the time. Prints before/after figures.

County: towns with villages; each town has standing groups (领导班子群, 机关群), a town head in
50+ groups, temporary task groups (专班), zombie groups kept alive by 收到/签到, duplicates and
cross groups. Everything is simulated; the bot's messages go to a ``RecordingSender``.
"""
from __future__ import annotations

import random
import statistics
import sys
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

from sqlalchemy import func, select

TASKS = ["秋粮收购", "防汛抗旱", "森林防火", "人居环境整治", "疫苗接种", "医保征缴", "安全生产", "乡村振兴",
         "招商引资", "文明创建", "信访维稳", "禁毒宣传", "秸秆禁烧", "河长制", "全国文明城市迎检", "人口普查"]
RITUAL = ["收到", "签到", "收到！", "好的", "已阅", "1", "👍"]
WORK = ["明天上午九点到村委会开会，带上走访台账", "三组的排查表已经汇总，请核对第4户", "下午两点去水库巡查",
        "请各村周五前报送本周进度", "河道清淤今天完成一段，明天继续", "收购点增加一台磅秤，地址在粮站"]


REPORTS = ["村里要求每天在群里上传入户走访照片", "每个专班都要求每天报送进度表，内容重复", "群里要求逐一回复“收到”并截图留痕",
           "同一份通知在五个群里各发一遍", "周末晚上在群里布置第二天的材料"]
DEMO_ACTOR = "demo"  # the actor of the demo's import record: a database that has it already holds a demo
DEMO_START = datetime(2026, 9, 7, 8, 0)  # a Monday, local time: the demo's fixed calendar when not kept


@dataclass
class DemoConfig:
    seed: int = 7
    weeks: int = 12
    towns: int = 3
    villages: int = 3
    database_url: str | None = None
    progress: bool = True
    # --keep: write into ``database_url`` (the configured database) and leave it there, simulating the
    # ``weeks`` weeks before the current one; ``base_url`` is where the printed login link points
    keep: bool = False
    base_url: str = "http://127.0.0.1:8000"
    link_minutes: int = 60


class HoldsRealData(Exception):
    """The database the demo was to keep its county in already holds data (a Chinese message)."""


def real_data(session) -> str | None:
    """Why the database must not receive the demo, or None.

    Real data: any person, group, message, audit record, anonymous answer or formalism report.
    The only rows that do not count are those the /local page seeds into an empty database (its
    persons and groups, as long as nothing else is stored); an earlier demo counts (its audit trail
    would be mixed with this one's)."""
    from platforms.local.inbound import SEED_GROUPS, SEED_PERSONS
    from storage.models import AuditRecord, FormalismReport, Group, Message, Person, PulseResponse, UselessVote

    def count(model, *where) -> int:
        return session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()

    if session.execute(select(AuditRecord.id).where(AuditRecord.actor == DEMO_ACTOR,
                                                    AuditRecord.action == "import").limit(1)).first():
        return "数据库里已经有一次演示的数据。要重新演示，请换一个空数据库（SQLite 可删除数据库文件后重试）。"
    persons = count(Person, Person.id.not_in([p[0] for p in SEED_PERSONS]))
    groups = count(Group, Group.id.not_in([g[0] for g in SEED_GROUPS]))
    other = sum(count(m) for m in (Message, AuditRecord, PulseResponse, UselessVote, FormalismReport))
    if persons or groups or other:
        return (f"数据库里已有真实数据（人员 {persons}、群 {groups}、消息与记录 {other}），演示不会写入。"
                "请用一个空数据库，例如 QUNZHI_DATABASE_URL=sqlite:///./demo.db qunzhi demo --keep。")
    return None


def keep_start(weeks: int, now: datetime, tz) -> datetime:
    """08:00 on the Monday ``weeks`` weeks before the current local week: the kept demo ends last Sunday."""
    today = now.astimezone(tz).date()
    monday = today - timedelta(days=today.weekday(), weeks=weeks)
    return datetime.combine(monday, time(8, 0), tzinfo=tz).astimezone(timezone.utc)


class ClockedSender:
    """Wraps the RecordingSender and notes the simulated time of every call."""

    def __init__(self, inner, clock):
        self.inner, self.clock, self.times = inner, clock, []

    def __getattr__(self, name):
        target = getattr(self.inner, name)
        if not callable(target) or name.startswith("appchat_get"):
            return target

        def call(*a, **kw):
            self.times.append((self.clock(), name, a[0] if a else kw.get("user_ids")))
            return target(*a, **kw)

        return call


def _median_max(session) -> tuple[float, int]:
    from storage.reports import groups_per_person

    counts = [v for v in groups_per_person(session).values()]
    return (statistics.median(counts) if counts else 0), max(counts, default=0)


def _ritual_share(session, since) -> float:
    from sqlalchemy import Integer, cast

    from storage.models import Message

    total, rituals = session.execute(select(func.count(), func.coalesce(func.sum(cast(Message.is_ritual, Integer)), 0))
                                     .where(Message.sent_at >= since)).one()
    return round(rituals / total, 3) if total else 0.0


def build_county(session, rng: random.Random, cfg: DemoConfig, now: datetime) -> dict:
    """Persons and groups; returns the simulation's view (group kinds and owners)."""
    from storage import repo
    from storage.models import Person

    kinds: dict[str, str] = {}
    persons: list[str] = []

    def person(pid, name, unit, role="cadre"):
        session.add(Person(id=pid, name=name, unit=unit, role=role, created_at=now))
        persons.append(pid)
        return pid

    def group(gid, name, unit, owner, members, kind, *, protected=False, temporary=False, registered=False,
              category=None, expires=None, age=200):
        g = repo.ensure_group(session, group_id=gid, platform="wecom", at=now - timedelta(days=age), name=name,
                              source="ledger")
        g.unit, g.owner_id, g.protected, g.temporary, g.category = unit, owner, protected, temporary, category
        g.registered_at = now - timedelta(days=age) if registered else None
        g.expires_at = expires
        g.first_seen_at = g.created_at = now - timedelta(days=age)
        quiet = 60 if kind == "zombie" else rng.randint(0, 5)
        g.last_work_at = now - timedelta(days=quiet)
        g.last_message_at = now - timedelta(days=rng.randint(0, 3))
        repo.add_members(session, gid, members, now - timedelta(days=age))
        kinds[gid] = kind

    session.add(Person(id="jw1", name="县纪委监委", unit="县纪委监委", role="commission", created_at=now))
    county_heads = [person(f"xw{i}", f"县领导{i}", "县委办") for i in range(4)]
    gid = 0
    for t in range(cfg.towns):
        town = f"{'城关容美走马燕子太平中营五里铁炉'[2 * (t % 8):2 * (t % 8) + 2]}镇{'' if t < 8 else t}"
        head = person(f"t{t}h", f"{town}镇长", town)
        staff = [person(f"t{t}s{i}", f"{town}干部{i}", town) for i in range(8)]
        village_cadres = [person(f"t{t}v{v}c{i}", f"{town}{v}村干部{i}", f"{town}{v}村")
                          for v in range(cfg.villages) for i in range(3)]
        group(f"g{gid}", f"{town}领导班子群", town, head, [head, *staff[:4]], "standing", protected=True, registered=True,
              category="领导班子群"); gid += 1
        group(f"g{gid}", f"{town}机关群", town, head, [head, *staff], "standing", protected=True, registered=True,
              category="机关群"); gid += 1
        n_tasks = 50 if t == 0 else 12  # 鹤峰: a town head in more than 50 groups
        for k in range(n_tasks):
            task = TASKS[k % len(TASKS)] + ("" if k < len(TASKS) else f"{k // len(TASKS) + 1}")
            members = [head, *rng.sample(staff, 3), *rng.sample(village_cadres, min(6, len(village_cadres)))]
            r = rng.random()
            if r < 0.35:  # zombie kept alive by 收到/签到
                group(f"g{gid}", f"{town}{task}工作群", town, rng.choice(staff), members, "zombie")
            elif r < 0.55:  # temporary task group, some already past their end
                exp = (now + timedelta(days=rng.randint(-20, 40))).date()
                group(f"g{gid}", f"{town}{task}专班", town, rng.choice(staff), members, "temporary", temporary=True,
                      registered=True, category="临时群", expires=exp, age=60)
            elif r < 0.70:  # duplicate of the previous group (same members, another name)
                group(f"g{gid}", f"{town}{task}群", town, rng.choice(staff), members, "duplicate")
                gid += 1
                group(f"g{gid}", f"{town}{task}工作交流群", town, rng.choice(staff), members, "duplicate")
            elif r < 0.80:  # cross group: members all inside the 机关群
                group(f"g{gid}", f"{town}{task}通知群", town, rng.choice(staff), [head, *staff[:5]], "cross")
            else:  # a real work group people still need
                group(f"g{gid}", f"{town}{task}调度群", town, rng.choice(staff), members, "needed",
                      registered=rng.random() < 0.5)
            gid += 1
        for v in range(cfg.villages):  # one village group each, in daily use
            vc = [c for c in village_cadres if c.startswith(f"t{t}v{v}c")]
            group(f"g{gid}", f"{town}{v}村两委群", f"{town}{v}村", vc[0], vc + [head], "needed", registered=True,
                  category="机关群", protected=True); gid += 1
    for i in range(6):  # county-level groups that pull every town head in
        heads = [f"t{t}h" for t in range(cfg.towns)]
        group(f"g{gid}", f"全县{TASKS[i]}调度群", "县委办", county_heads[i % 4], heads + county_heads,
              "needed" if i < 3 else "zombie", registered=i < 3); gid += 1
    session.flush()
    return {"kinds": kinds, "persons": persons}


def run_demo(cfg: DemoConfig) -> dict:
    from bot.runtime import Runtime
    from storage import audit, feedback, logins
    from storage.models import Person
    from platforms.local.sender import RecordingSender
    from config.settings import Settings
    from governance.worktime import WorkTime, is_working_time
    from governance.events import Event
    from scheduler.outbox import Dispatcher
    from scheduler import lifecycle
    from storage.db import Database
    from storage.models import AuditRecord, Group, Membership
    from storage.notices import deliver_due_notices
    from storage.reports import enqueue_commission_digest, snapshot_stats

    rng = random.Random(cfg.seed)
    tmp = None
    url = cfg.database_url
    if url is None:
        tmp = tempfile.TemporaryDirectory(prefix="qunzhi-demo-")
        url = f"sqlite:///{Path(tmp.name) / 'demo.db'}"
    settings = Settings(_env_file=None, environment="development", database_url=url, admin_token="demo-admin-token",
                        run_scheduler=False, ingest_writer="thread")  # the demo's clock is its own
    tz = settings.tz
    if cfg.keep and url is None:
        raise ValueError("--keep needs the database to keep the demo in")
    start = keep_start(cfg.weeks, datetime.now(timezone.utc), tz) if cfg.keep \
        else DEMO_START.replace(tzinfo=tz).astimezone(timezone.utc)
    clock_now = [start]
    clock = lambda: clock_now[0]  # noqa: E731
    db = Database(url)
    if cfg.keep:
        with db.session() as s:
            why = real_data(s)
        if why:
            db.dispose()
            raise HoldsRealData(why)
    rt = Runtime(settings, db=db, clock=clock)
    sender = ClockedSender(RecordingSender(), clock)
    wt = WorkTime.from_settings(settings)
    with db.session() as s:
        world = build_county(s, rng, cfg, start)
        # the county's ledger arrives as an import: the dashboard's weekly trends start here
        audit.record(s, actor=DEMO_ACTOR, action="import", at=start, reason="导入演示县台账（模拟数据）")
    frng = random.Random(cfg.seed + 1)  # the anonymous feedback draws apart from the county's own
    with db.session() as s:
        cadre_units = dict(s.execute(select(Person.id, Person.unit).where(Person.role == "cadre")).all())
    kinds = world["kinds"]
    with db.session() as s:
        groups_before = s.execute(select(func.count()).select_from(Group).where(Group.status.in_(("active", "warned")))).scalar_one()
        med_before, max_before = _median_max(s)
        members = {gid: [m for m in s.execute(select(Membership.person_id).where(Membership.group_id == gid)).scalars()]
                   for gid in kinds}
        owners = dict(s.execute(select(Group.id, Group.owner_id)).all())
        names = dict(s.execute(select(Group.id, Group.name)).all())
        protected_ids = set(s.execute(select(Group.id).where(Group.protected.is_(True))).scalars())
    dispatcher = Dispatcher(db, sender, clock=clock, workers=1, global_per_second=None)
    answered: set[str] = set()
    restored_once: set[str] = set()

    def say(who, text, group_id=None, at=None):
        clock_now[0] = at or clock_now[0]
        ev = Event(platform="wecom", kind="message", sender_id=who, at=clock_now[0], text=text, group_id=group_id,
                   msg_id=uuid.uuid4().hex, mentioned_bot=False, group_name=names.get(group_id) if group_id else None)
        return rt.process(ev)

    def at_local(day, hh, mm=0):
        return datetime.combine(day, time(hh, mm), tzinfo=tz).astimezone(timezone.utc)

    days = cfg.weeks * 7
    first_day = start.astimezone(tz).date()
    ritual_before = None
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=days, desc="模拟", unit="天", file=sys.stderr)
    for d in range(days):
        day = first_day + timedelta(days=d)
        weekday = day.weekday() < 5
        with db.session() as s:
            live = set(s.execute(select(Group.id).where(Group.status.in_(("active", "warned")))).scalars())
        # group traffic (at 10:xx)
        for gid, kind in kinds.items():
            if gid not in live or not weekday:
                continue
            p = {"needed": 0.5, "standing": 0.5, "temporary": 0.3, "duplicate": 0.15, "cross": 0.1, "zombie": 0.4}[kind]
            if rng.random() < p:
                work = kind in ("needed", "standing", "temporary") or rng.random() < 0.03
                say(rng.choice(members[gid]), rng.choice(WORK if work else RITUAL), gid, at_local(day, 10, rng.randint(0, 59)))
        if d == 6:
            with db.session() as s:
                ritual_before = _ritual_share(s, start)

        # jobs: sweep (daily 08:30), notices and outbox three times a day (incl. the evening)
        clock_now[0] = at_local(day, 8, 30)
        lifecycle.sweep(db, clock_now[0], settings, apply=True, sender=sender)
        if day.weekday() == 0:
            clock_now[0] = at_local(day, 8, 45)
            with db.session() as s:
                enqueue_commission_digest(s, clock_now[0], settings)
        for hh in (9, 14, 21):
            clock_now[0] = at_local(day, hh, 5)
            with db.session() as s:
                deliver_due_notices(s, now=clock_now[0], budget=settings.weekly_message_budget, wt=wt)
            dispatcher.drain(max_rounds=20)
        clock_now[0] = at_local(day, 22, 0)
        lifecycle.advance_pending(db, clock_now[0], settings, sender)
        with db.session() as s:
            feedback.close_windows(s, clock_now[0])  # the close_anonymous_windows job
            snapshot_stats(s, day)
            warned = s.execute(select(Group.id).where(Group.status == "warned", Group.warning_sent_at.is_not(None))).scalars().all()
            dissolved = s.execute(select(Group.id).where(Group.status == "dissolved")).scalars().all()
            ordered = s.execute(select(Group.id).where(Group.status == "dissolving",
                                                       Group.dissolve_method == "order")).scalars().all()
        # owners answer some of the time (in the afternoon)
        for gid in warned:
            if gid in answered or not weekday:
                continue
            answered.add(gid)
            kind, owner = kinds.get(gid), owners.get(gid)
            if kind == "needed" and rng.random() < 0.8:
                say(owner, f"保留 {names[gid]} 还在用，每周调度", at=at_local(day, 15, 10))
            elif kind == "temporary" and rng.random() < 0.3:
                say(owner, f"续期 {names[gid]} 30天", at=at_local(day, 15, 20))
            elif kind in ("zombie", "duplicate") and rng.random() < 0.1:
                say(owner, f"保留 {names[gid]} 领导要求保留", at=at_local(day, 15, 30))
        # owners carry out most dissolution orders within a few days and confirm them
        for gid in ordered:
            if weekday and rng.random() < 0.6:
                say(owners.get(gid), f"已解散 {names[gid]}", at=at_local(day, 11, 0))
        # some dissolved groups were seasonal (防汛 before the flood season): the owner takes them back
        for gid in dissolved:
            if gid in restored_once or not weekday:
                continue
            restored_once.add(gid)
            if kinds.get(gid) == "needed" or rng.random() < 0.12:
                say(owners.get(gid), f"恢复 {names[gid]}", at=at_local(day, 16, 0))
        if weekday:
            _feedback(db, frng, say, day, at_local, live, kinds, members, names, cadre_units, settings)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    dispatcher.close()
    with db.session() as s:
        groups_after = s.execute(select(func.count()).select_from(Group).where(Group.status.in_(("active", "warned")))).scalar_one()
        med_after, max_after = _median_max(s)
        actions = dict(s.execute(select(AuditRecord.action, func.count()).group_by(AuditRecord.action)).all())
        # a dissolution on WeCom goes dissolve_intent → order to the owner → dissolve (confirmed)
        dissolved_ids = set(s.execute(select(AuditRecord.group_id).where(
            AuditRecord.action.in_(("dissolve_intent", "dissolve")))).scalars())
        ritual_after = _ritual_share(s, clock_now[0] - timedelta(days=7))
        cadres = len(world["persons"])
    link = None
    if cfg.keep:  # a local install has no admin token: a one-time link for the commission member
        with db.session() as s:
            link = logins.issue_link(s, s.get(Person, "jw1"), datetime.now(timezone.utc), cfg.base_url,
                                     valid=timedelta(minutes=cfg.link_minutes))
    outside = [t for t, _, _ in sender.times if not is_working_time(t, wt)]
    to_people = [x for x in sender.times if x[1] in ("send_text", "send_markdown", "send_card")]
    db.dispose()
    if tmp is not None:
        tmp.cleanup()
    return {
        "seed": cfg.seed, "weeks": cfg.weeks, "cadres": cadres,
        "groups_before": groups_before, "groups_after": groups_after,
        "groups_per_cadre_median_before": med_before, "groups_per_cadre_median_after": med_after,
        "groups_per_cadre_max_before": max_before, "groups_per_cadre_max_after": max_after,
        "ritual_share_before": ritual_before, "ritual_share_after": ritual_after,
        "groups_dissolved": len(dissolved_ids), "groups_kept": actions.get("keep", 0),
        "groups_renewed": actions.get("renew", 0), "groups_restored": actions.get("restore", 0),
        "groups_merged": actions.get("merge", 0),
        "protected_dissolved": len(dissolved_ids & protected_ids),
        "bot_messages": len(to_people),
        "bot_messages_per_cadre_week": round(len(to_people) / max(cadres, 1) / cfg.weeks, 3),
        "messages_outside_working_time": len(outside),
        "sender_calls": len(sender.times),
        "kept": cfg.keep, "start": start.isoformat(), "login_link": link,
        "login_link_minutes": cfg.link_minutes if link else None,
    }


def _feedback(db, rng, say, day, at_local, live, kinds, members, names, cadre_units, settings) -> None:
    """Anonymous feedback through the real paths: on Fridays most cadres answer the weekly pulse
    (heavier while they are in many groups), members of idle groups say privately that a group is
    useless, and now and then someone reports a formalism demand (反映)."""
    from storage import feedback
    from storage.models import Person
    from storage.reports import groups_per_person

    if day.weekday() == 4:
        with db.session() as s:
            counts = groups_per_person(s)
            for pid in cadre_units:
                if rng.random() < 0.7:
                    n = counts.get(pid, 0)
                    heavy = min(0.9, n / 25)
                    r = rng.random()
                    value = 3 if r < heavy else (2 if r < heavy + (1 - heavy) / 2 else 1)
                    feedback.record_pulse(s, secret=settings.pseudonym_secret, person=s.get(Person, pid), value=value,
                                          local_day=day, tz=settings.tz)
    for gid, kind in kinds.items():
        if gid in live and kind in ("zombie", "duplicate", "cross") and rng.random() < 0.04:
            who = rng.choice(members[gid])
            if who in cadre_units:
                say(who, f"这个群没用 {names[gid]}", at=at_local(day, 17, rng.randint(0, 50)))
    if rng.random() < 0.15:
        say(rng.choice(list(cadre_units)), "反映 " + rng.choice(REPORTS), at=at_local(day, 18, rng.randint(0, 50)))


def format_result(r: dict) -> str:
    return "\n".join([
        f"模拟县：{r['cadres']} 名干部，{r['weeks']} 周（种子 {r['seed']}）",
        f"工作群：{r['groups_before']} → {r['groups_after']}",
        f"干部人均所在群：中位数 {r['groups_per_cadre_median_before']} → {r['groups_per_cadre_median_after']}，"
        f"最多 {r['groups_per_cadre_max_before']} → {r['groups_per_cadre_max_after']}",
        f"留痕消息占比：{r['ritual_share_before']} → {r['ritual_share_after']}",
        f"解散 {r['groups_dissolved']}，保留 {r['groups_kept']}，续期 {r['groups_renewed']}，恢复 {r['groups_restored']}",
        f"受保护群被解散：{r['protected_dissolved']}（应为 0）",
        f"助手发出的消息：每名干部每周 {r['bot_messages_per_cadre_week']} 条",
        f"工作时间以外发出的消息：{r['messages_outside_working_time']}（应为 0）",
        *([] if not r.get("kept") else [
            "",
            "演示数据已写入配置的数据库。运行 make run（或 qunzhi serve）后，用下面的一次性链接以县纪委监委身份登录看板"
            f"（{r['login_link_minutes']}分钟内有效，只能用一次）：",
            r["login_link"],
            "链接失效后：本地模式下打开 /local，选“县纪委监委”，发送“看板”取得新链接。",
        ]),
    ])
