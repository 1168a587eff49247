"""Prometheus metrics (``/metrics``), counted across the processes of one instance.

``configure(directory)`` is called once per process before any metric is touched: with a
directory, prometheus-client's multiprocess mode (the web process, its writer process and an
in-process scheduler each write their own files there; the scrape sums them); without one, the
plain in-process registry. ``qunzhi serve`` makes a private directory when
``QUNZHI_METRICS_DIR`` is not set, so its writer process is always counted.

The metrics are defined in ``telemetry.metrics`` (imported lazily, after ``configure``).
"""
from __future__ import annotations

import os
from pathlib import Path

_ENV = "PROMETHEUS_MULTIPROC_DIR"
_configured: dict[str, str | None] = {}


def configure(directory: str | None, *, fresh: bool = False) -> str | None:
    """Point prometheus-client at ``directory`` (created; emptied when ``fresh``, at an instance's
    start). prometheus-client reads the directory from its environment variable, the one setting
    this project hands to a library that way; child processes inherit it."""
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        if fresh:
            for f in path.glob("*.db"):
                f.unlink()
        os.environ[_ENV] = str(path)
    _configured["dir"] = directory or None
    return directory or None


def multiprocess_dir() -> str | None:
    return os.environ.get(_ENV) or None


def mark_process_dead(pid: int) -> None:
    """A writer process that ended: its live gauges no longer count."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def render() -> tuple[bytes, str]:
    """The text exposition of every process of this instance."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    import telemetry.metrics  # noqa: F401  (defines the metrics, so a scrape before any event lists them)

    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    return generate_latest(registry), CONTENT_TYPE_LATEST
