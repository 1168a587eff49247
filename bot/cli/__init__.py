"""The ``qunzhi`` command. Sub-commands of later parts register themselves from their own modules."""
from __future__ import annotations

import importlib
import logging
import sys

import typer

from config.settings import Settings, get_settings

app = typer.Typer(help="群治 Qunzhi：工作群治理助手", no_args_is_help=True, add_completion=False)
import_app = typer.Typer(help="导入台账或消息记录", no_args_is_help=True)
app.add_typer(import_app, name="import")

# Modules that add their own sub-commands with ``register(app)``.
PLUGINS = [
    "bot.cli.ledger",      # import groups|messages|people, reconcile, groups, roles
    "bot.cli.governance",  # scan, sweep
    "bot.cli.scheduler",   # scheduler
    "bot.cli.report",      # report, audit verify, demo
    "bot.cli.ops",         # backup, restore
]


def load_settings() -> Settings:
    try:
        return get_settings()
    except Exception as e:  # pydantic ValidationError: show the Chinese message, not a traceback
        typer.secho(f"配置错误：{settings_error_text(e)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def settings_error_text(e: Exception) -> str:
    """Only the validators' own messages: no pydantic wrapper in English, no echoed secret values."""
    from pydantic import ValidationError

    if not isinstance(e, ValidationError):
        return str(e)
    lines = []
    for err in e.errors(include_url=False, include_input=False):
        if err["type"] == "value_error":
            lines.append(str(err["msg"]).removeprefix("Value error, "))
        else:
            name = "QUNZHI_" + "_".join(str(x) for x in err["loc"]).upper()
            lines.append(f"拒绝启动：{name} 的取值无效 (refusing to start: {name}: {err['msg']})")
    return "\n".join(lines)


def runtime():
    from bot.runtime import Runtime

    return Runtime(load_settings())


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="输出调试日志")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)


@app.command()
def serve(host: str = typer.Option("127.0.0.1", "--host", help="监听地址"),
          port: int = typer.Option(8000, "--port", help="端口"),
          scheduler: bool = typer.Option(True, "--scheduler/--no-scheduler", help="在本进程内运行定时任务")) -> None:
    """启动机器人服务（开发环境、无企业微信凭据且只监听本机时进入本地模式，提供网页对话）。"""
    import tempfile

    import telemetry
    from bot.app import create_app

    from platforms.registry import startup_lines

    settings = load_settings()
    # before the writer process starts: it inherits the directory and its metrics are counted
    telemetry.configure(settings.metrics_dir or tempfile.mkdtemp(prefix="qunzhi-metrics-"), fresh=True)
    rt = runtime()
    for line in startup_lines(settings, host=host, port=port):  # one per platform: what it receives and sends
        typer.echo(line)
    from bot.runtime import freeze_startup_objects

    web_app = create_app(settings, runtime=rt, start_scheduler=scheduler, bind_host=host, start_streams=True)
    freeze_startup_objects()
    _run_server(web_app, host=host, port=port, settings=settings)


def _run_server(web_app, *, host: str, port: int, settings: Settings) -> None:
    from bot.server import run

    run(web_app, host=host, port=port, settings=settings)



def _load_plugins() -> None:
    for name in PLUGINS:
        importlib.import_module(name).register(app)


_load_plugins()

if __name__ == "__main__":
    app()
