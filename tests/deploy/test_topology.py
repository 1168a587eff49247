"""deploy/: the county topology without containers. Two `qunzhi serve` behind Debian's nginx with
a self-signed certificate, the scheduler beside them, the local PostgreSQL; one instance killed and
the other still serving. Plus `nginx -t` on the shipped site file and `systemd-analyze verify` on
the shipped units, and every setting documented in the shipped .env example."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from config.settings import Settings
from tests.conftest import PG_SKIP, PG_URL

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
QUNZHI = Path(sys.executable).with_name("qunzhi")
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx not installed (make test installs Debian's nginx as root)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _site(tmp: Path, web: list[int], tls: int, plain: int, cert: Path) -> Path:
    conf = (DEPLOY / "nginx" / "qunzhi.conf").read_text(encoding="utf-8")
    conf = conf.replace("127.0.0.1:8001", f"127.0.0.1:{web[0]}").replace("127.0.0.1:8002", f"127.0.0.1:{web[1]}")
    conf = conf.replace("listen 443 ssl;", f"listen 127.0.0.1:{tls} ssl;").replace("listen 80;", f"listen 127.0.0.1:{plain};")
    conf = conf.replace("/etc/qunzhi/tls/qunzhi.crt", str(cert)).replace("/etc/qunzhi/tls/qunzhi.key", str(cert.with_suffix(".key")))
    conf = re.sub(r"access_log \S+;", f"access_log {tmp}/access.log upstreams;", conf)
    conf = re.sub(r"error_log  \S+ warn;", f"error_log {tmp}/site-error.log warn;", conf)
    site = tmp / "qunzhi.conf"
    site.write_text(conf, encoding="utf-8")
    main = tmp / "nginx.conf"
    main.write_text(f"""worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format upstreams '$upstream_addr $status $request_uri';
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    include {site};
}}
""", encoding="utf-8")
    return main


def _cert(tmp: Path) -> Path:
    subprocess.run(["sh", str(DEPLOY / "gen-selfsigned.sh"), str(tmp / "tls"), "qunzhi.local"], check=True,
                   capture_output=True, timeout=60)
    return tmp / "tls" / "qunzhi.crt"


@needs_nginx
def test_the_shipped_site_file_passes_nginx_t(tmp_path):
    main = _site(tmp_path, [_free_port(), _free_port()], _free_port(), _free_port(), _cert(tmp_path))
    done = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(main)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not available")
def test_the_shipped_units_verify(tmp_path):
    env = tmp_path / "qunzhi.env"
    shutil.copy(DEPLOY / "qunzhi.env.example", env)
    for unit in (DEPLOY / "systemd").iterdir():
        body = unit.read_text(encoding="utf-8").replace("/opt/qunzhi/.venv/bin/qunzhi", str(QUNZHI))
        (tmp_path / unit.name).write_text(body.replace("/etc/qunzhi/qunzhi.env", str(env)), encoding="utf-8")
    names = [str(tmp_path / n) for n in ("qunzhi-web@8001.service", "qunzhi-scheduler.service", "qunzhi.target")]
    done = subprocess.run(["systemd-analyze", "verify", *names], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_setting_is_in_the_env_example():
    lines = (DEPLOY / "qunzhi.env.example").read_text(encoding="utf-8").splitlines()
    documented = {ln.split("=", 1)[0] for ln in lines if ln.startswith("QUNZHI_")}
    expected = {"QUNZHI_" + n.upper() for n in Settings.model_fields}
    assert expected - documented == set() and documented - expected == set()
    assert not [ln for ln in lines if ln.startswith("QUNZHI_") and " #" in ln]  # systemd keeps inline comments
    values = dict(ln.split("=", 1) for ln in lines if ln.startswith("QUNZHI_"))
    values.update(QUNZHI_ADMIN_TOKEN="a-real-admin-token-1", QUNZHI_PSEUDONYM_KEY="another-real-key-2")
    fields = {k[len("QUNZHI_"):].lower(): v for k, v in values.items() if v != ""}
    Settings(_env_file=None, **fields)  # the example, with its secrets filled in, is a valid configuration


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"{url} exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            up = httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:  # not listening yet
            up = False
        if up:
            return
        time.sleep(0.2)
    raise AssertionError(f"{url} not up: {log.read_text(errors='replace')[-2000:]}")


@needs_nginx
def test_two_instances_behind_nginx_survive_one_killed(tmp_path):
    if not PG_URL:
        pytest.skip(PG_SKIP)
    schema = f"qz_deploy_{os.getpid()}"
    admin = create_engine(PG_URL)
    with admin.begin() as c:
        c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUNZHI_")}
    env.update(QUNZHI_ENVIRONMENT="production", QUNZHI_DATABASE_URL=f"{PG_URL}{sep}options=-csearch_path%3D{schema}",
               QUNZHI_ADMIN_TOKEN="deploy-admin-token-123", QUNZHI_PSEUDONYM_KEY="deploy-pseudonym-key-456",
               QUNZHI_BRIDGE_SECRET="deploy-bridge-secret-789", QUNZHI_BRIDGE_URL="http://127.0.0.1:9/bridge",
               QUNZHI_TRUSTED_PROXIES="127.0.0.1", QUNZHI_RUN_SCHEDULER="false", QUNZHI_INGEST_WRITER="thread")
    web = [_free_port(), _free_port()]
    tls, plain = _free_port(), _free_port()
    cert = _cert(tmp_path)
    main = _site(tmp_path, web, tls, plain, cert)
    procs: list[subprocess.Popen] = []
    try:
        for i, port in enumerate(web):
            log = tmp_path / f"web{i}.log"
            procs.append(subprocess.Popen([str(QUNZHI), "serve", "--host", "127.0.0.1", "--port", str(port),
                                           "--no-scheduler"], env=env, cwd=tmp_path,
                                          stdout=log.open("wb"), stderr=subprocess.STDOUT))
            _wait(f"http://127.0.0.1:{port}/healthz", procs[-1], log)
        sched_log = tmp_path / "scheduler.log"
        scheduler = subprocess.Popen([str(QUNZHI), "scheduler", "--poll", "1"], env=env, cwd=tmp_path,
                                     stdout=sched_log.open("wb"), stderr=subprocess.STDOUT)
        procs.append(scheduler)
        nginx = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(main), "-g", "daemon off;"],
                                 stdout=subprocess.DEVNULL, stderr=(tmp_path / "nginx.out").open("wb"))
        procs.append(nginx)
        base = f"https://127.0.0.1:{tls}"
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), timeout=5.0) as client:
            end = time.monotonic() + 30
            while True:
                try:
                    if client.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > end:
                        raise
                time.sleep(0.2)
            assert all(client.get(f"{base}/healthz").status_code == 200 for _ in range(10))
            used = {ln.split()[0] for ln in (tmp_path / "access.log").read_text().splitlines() if "/healthz" in ln}
            assert used >= {f"127.0.0.1:{web[0]}", f"127.0.0.1:{web[1]}"}, used  # both instances served
            assert client.get(f"{base}/metrics").status_code == 404  # never exposed through nginx
            assert client.get(f"{base}/local").status_code == 404
            assert httpx.get(f"http://127.0.0.1:{plain}/healthz").status_code == 301
            procs[0].send_signal(signal.SIGTERM)
            procs[0].wait(timeout=40)
            assert all(client.get(f"{base}/healthz").status_code == 200 for _ in range(10))
        assert scheduler.poll() is None, sched_log.read_text(errors="replace")[-2000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def test_the_compose_file_names_the_shipped_parts():
    import yaml
    spec = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert set(spec["services"]) == {"db", "web1", "web2", "scheduler", "nginx"}
    assert (ROOT / spec["services"]["web1"]["build"]["context"].replace("..", ".") / "deploy" / "Dockerfile").exists()
    mounted = [v.split(":")[0] for v in spec["services"]["nginx"]["volumes"]]
    assert "./nginx/qunzhi.conf" in mounted and (DEPLOY / "nginx" / "qunzhi.conf").exists()
    ports = {s["command"][s["command"].index("--port") + 1] for n, s in spec["services"].items() if n.startswith("web")}
    site = (DEPLOY / "nginx" / "qunzhi.conf").read_text(encoding="utf-8")
    assert all(f"127.0.0.1:{p}" in site for p in ports)  # nginx sends to the ports the instances listen on
