"""``qunzhi scheduler``: run the jobs without the web server (or inspect the outbox)."""
from __future__ import annotations

import signal
import threading

import typer

from governance import labels


def register(app: typer.Typer) -> None:
    @app.command("scheduler")
    def scheduler_command(
        once: str = typer.Option("", "--once", help="立即运行一个任务后退出，例如 sweep、dispatch_outbox"),
        outbox: bool = typer.Option(False, "--outbox", help="显示发件箱各状态数量和待人工确认的消息"),
        requeue: int = typer.Option(0, "--requeue", help="人工确认未送达后（或配置好平台后），重新发送某条 uncertain/dead/unreachable 消息"),
        poll: float = typer.Option(5.0, "--poll", help="争取主实例的间隔（秒）"),
    ) -> None:
        """单独运行定时任务（多实例时只有一个主实例执行任务）。"""
        from sqlalchemy import func, select

        from bot.cli import runtime
        from scheduler import jobs, registry
        from scheduler.service import start_in_process
        from storage.models import OutboxMessage

        rt = runtime()
        if rt.settings.metrics_dir:  # share an instance's directory: its /metrics then counts these jobs
            import telemetry

            telemetry.configure(rt.settings.metrics_dir)
        warning = jobs.holiday_schedule_check(rt)
        if warning:
            typer.secho(f"注意：{warning}", fg=typer.colors.YELLOW, err=True)
        if outbox or requeue:
            with rt.db.session() as s:
                if requeue:
                    row = s.get(OutboxMessage, requeue)
                    if row is None or row.status not in ("uncertain", "dead", "unreachable"):
                        typer.echo(f"只能重发状态为“{labels.label('outbox_status', 'uncertain')}”、"
                                   f"“{labels.label('outbox_status', 'dead')}”或"
                                   f"“{labels.label('outbox_status', 'unreachable')}”的消息。")
                        raise typer.Exit(1)
                    row.status, row.attempts, row.next_attempt_at = "pending", 0, rt.now()
                    typer.echo(f"已重新排队：{requeue}")
                for status, n in s.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)):
                    typer.echo(f"{labels.label('outbox_status', status)}\t{n}")
                for row in s.execute(select(OutboxMessage).where(OutboxMessage.status == "uncertain")).scalars():
                    typer.echo(f"{labels.label('outbox_status', 'uncertain')} #{row.id} → {row.recipient}"
                               f"（{labels.label('message', row.kind)}）：可能已送达，请人工确认，"
                               f"未送达时用 --requeue {row.id} 重发")
                for row in s.execute(select(OutboxMessage).where(OutboxMessage.status == "unreachable")).scalars():
                    typer.echo(f"{labels.label('outbox_status', 'unreachable')} #{row.id} → {row.recipient}"
                               f"（{labels.label('message', row.kind)}）：{row.last_error or '没有可用的发送渠道'}；"
                               f"配置好该平台后可用 --requeue {row.id} 重发")
            return
        if once:
            if once not in jobs.JOBS:
                typer.echo("可用任务：" + "、".join(jobs.JOBS))
                raise typer.Exit(2)
            registry.register(rt)
            result = jobs.run_job(once)
            typer.echo(f"{once}: {result}")
            return
        svc = start_in_process(rt, poll_seconds=poll)
        typer.echo("定时任务已启动（Ctrl+C 退出）。")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        svc.shutdown()
