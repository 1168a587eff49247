"""The sweep's storage side: what it would do (:func:`plan`, :func:`preview_sweep`), the lock that
keeps two sweeps apart (:func:`sweep_lock`), and the database steps of an applied sweep
(:func:`apply_sweep`, then :func:`finish_sweep` once the platform steps were taken).

The whole applied sweep, platform steps included, is ``scheduler.lifecycle.sweep``: it holds
the lock, calls :func:`apply_sweep`, takes the appchat steps through the platform's sender
and calls :func:`finish_sweep`. One load of the facts serves the scan, the plan, the steps
and the closing refresh: every membership is read once.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from governance import labels
from governance.capabilities import Table, resolve
from governance.lifecycle import (
    DISSOLVE_STEPS, RESTORE_STEPS, WARN_KINDS, LifecycleError, allowed, next_step, transition,
)
from governance.model import Finding
from governance.scan import kinds_by_group
from storage.lifecycle import transitions
from storage.lifecycle.facts import DISSOLVING, RESTORING, Facts, group_facts, load_facts, params_from
from storage.lifecycle.findings import compute_findings, refresh_findings
from storage.models import Group

log = logging.getLogger("qunzhi.lifecycle")

#: the PostgreSQL advisory lock key of the sweep (scheduler.service's leader lock uses another)
SWEEP_LOCK_KEY = 727276


@dataclass
class Step:
    group_id: str
    name: str
    action: str  # warn|unwarn|dissolve|purge|resume|escalate
    method: str | None = None
    detail: str = ""
    result: str = "planned"  # planned|done|skipped|pending|error


@dataclass
class SweepReport:
    now: datetime
    applied: bool
    steps: list[Step] = field(default_factory=list)
    findings: int = 0
    locked_out: bool = False

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for s in self.steps:
            out[s.action] += 1
        return dict(out)


@dataclass
class SweepRun:
    """An applied sweep between its database steps and its closing refresh."""

    report: SweepReport
    facts: Facts


def plan(session: Session, now: datetime, settings, findings: list[Finding], facts: Facts,
         capabilities: Table) -> list[Step]:
    """What the sweep would do at ``now`` given ``findings`` over ``facts`` (reads only;
    ``capabilities``: the platforms configured here, ``platforms.capabilities.table``)."""
    params = params_from(settings)
    kinds = kinds_by_group(findings)
    steps: list[Step] = []
    for gf in facts.live + [f for f in facts.gone if f.status == "dissolved"]:
        g_kinds = kinds.get(gf.id, set())
        step = next_step(gf, facts.warning_sent_at.get(gf.id), g_kinds, now, params)
        if step is None and gf.status == "warned" and not (g_kinds & WARN_KINDS):
            steps.append(Step(gf.id, gf.name, "unwarn", detail="已不再符合解散条件"))
            continue
        if step is None:
            continue
        detail = labels.kinds(sorted(g_kinds)) if step != "purge" else f"解散已满{params.restore_days}天"
        method = None
        if step == "dissolve":
            method = resolve(capabilities, gf.platform, source=facts.sources.get(gf.id)).dissolve_method
        steps.append(Step(gf.id, gf.name, step, method, detail))
    for g in session.execute(select(Group).where(Group.status.in_((DISSOLVING, RESTORING, "dissolved")))
                             .order_by(Group.id)).scalars():
        st = g.dissolve_state or {}
        if g.status == "dissolved":
            if transitions._purge_pending(g.status, st):
                steps.append(Step(g.id, g.name, "resume", "appchat", "清除：" + labels.label("step", "disband")))
            continue
        if g.status == RESTORING or g.dissolve_method == "appchat":
            todo = RESTORE_STEPS if g.status == RESTORING else DISSOLVE_STEPS
            done = (st.get("restore") or {}).get("done", []) if g.status == RESTORING else st.get("done", [])
            steps.append(Step(g.id, g.name, "resume", "appchat",
                              ("恢复" if g.status == RESTORING else "解散") + "：" +
                              "、".join(labels.label("step", s) for s in todo if s not in done)))
        elif g.dissolve_method == "order" and g.order_deadline and g.order_deadline <= now and not st.get("escalated_at"):
            steps.append(Step(g.id, g.name, "escalate", "order", "解散通知逾期未执行"))
    return steps


def preview_sweep(db, now: datetime, settings, capabilities: Table) -> SweepReport:
    """The dry run: what an applied sweep would do at ``now``; changes nothing."""
    report = SweepReport(now=now, applied=False)
    with db.session() as s:
        facts = load_facts(s, now, settings)
        findings = compute_findings(s, now, settings, facts=facts)
        report.findings = len(findings)
        report.steps = plan(s, now, settings, findings, facts, capabilities)
        s.rollback()
    return report


@contextmanager
def sweep_lock(db):
    """Yields True while this process holds the sweep's lock, False when another holds it.

    A session-level advisory lock on PostgreSQL, so two sweeps (or a sweep and the every-minute
    platform steps) never run together across processes; elsewhere always True (one process)."""
    if db.dialect != "postgresql":
        yield True
        return
    conn = db.engine.connect()
    try:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": SWEEP_LOCK_KEY}).scalar()
        conn.commit()
        if not got:
            yield False
            return
        try:
            yield True
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SWEEP_LOCK_KEY})
    finally:
        conn.close()


def apply_sweep(db, now: datetime, settings, capabilities: Table) -> SweepRun:
    """The database steps of an applied sweep (the caller holds :func:`sweep_lock`): findings
    refreshed, then warn, unwarn, dissolve (the intent), purge and escalate, each group in its own
    transaction. Platform steps waiting (``resume``) are left to the caller."""
    report = SweepReport(now=now, applied=True)
    with db.session() as s:
        facts = load_facts(s, now, settings)
        findings = refresh_findings(s, now, settings, facts=facts)
    report.findings = len(findings)
    by_group: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        if f.group_ids and f.action in ("warn", "dissolve", "merge"):
            by_group[f.group_ids[0]].append(f)
    with db.session() as s:
        steps = plan(s, now, settings, findings, facts, capabilities)
    report.steps = [st for st in steps if st.action != "resume"]  # the caller adds what really ran
    for step in report.steps:
        try:
            with db.session() as s:
                step.result = apply_step(s, step, by_group.get(step.group_id, []), facts, now, settings,
                                         capabilities)
        except LifecycleError as e:
            step.result, step.detail = "skipped", str(e)
        except Exception:  # one group's failure must not stop the others
            log.exception("sweep step failed for %s", step.group_id)
            step.result, step.detail = "error", "处理出错，详见服务日志"
    return SweepRun(report=report, facts=facts)


def finish_sweep(db, run: SweepRun, now: datetime, settings) -> None:
    """After the platform steps: persist the findings as they stand after the changes, so a
    second run is a no-op (the memberships are not read again)."""
    if any(st.result in ("done", "pending") for st in run.report.steps):
        with db.session() as s:
            refresh_findings(s, now, settings, facts=load_facts(s, now, settings, reuse=run.facts))


def apply_step(s: Session, step: Step, findings: list[Finding], facts: Facts, now: datetime, settings,
               capabilities: Table) -> str:
    """One planned step, re-checked against the group's row under a lock (a stale plan cannot
    dissolve a group protected since)."""
    g = transitions._locked(s, step.group_id)
    if g is None:
        return "skipped"
    state = transitions.state_of(g)
    if step.action == "warn":
        try:
            transition(state, "warn", now)
        except LifecycleError:  # warned, dissolved or protected since the plan
            return "skipped"
        transitions.warn(s, g, findings, group_facts(g, facts.members.get(g.id, frozenset())), now, settings)
        return "done"
    if step.action == "unwarn":
        if not allowed(state, "unwarn"):
            return "skipped"
        transitions.unwarn(s, g, now, settings, reason="已不再符合解散条件")
        return "done"
    if step.action == "dissolve":
        if not allowed(state, "dissolve"):
            return "skipped"  # already dissolving/dissolved or vetoed since the plan
        reason = "；".join(r for f in findings for r in f.reasons) or (g.status_reason or "长期无工作消息")
        step.method = transitions.begin_dissolution(s, g, now, settings, capabilities=capabilities,
                                                    actor=transitions.SYSTEM, reason=reason)
        return "pending" if step.method != "order" else "done"
    if step.action == "purge":
        if not allowed(state, "purge"):
            return "skipped"
        result = transitions.purge(s, g, now, settings, capabilities=capabilities)
        if result == "pending":
            step.detail += "：将在平台上解散"
        return result
    if step.action == "escalate":
        return "done" if transitions.escalate(s, g, now) else "skipped"
    return "skipped"
