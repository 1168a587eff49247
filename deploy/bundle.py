"""``make bundle``: one archive that installs Qunzhi with no network (county intranets have none).

    python deploy/bundle.py --target py311-x86_64      # or py311-aarch64 (麒麟/统信 on ARM), py312-...
    python deploy/bundle.py --target py311-x86_64 --check   # then install it into a fresh venv, offline

The archive ``dist/qunzhi-bundle-<target>.tar.gz`` holds the wheels of every pinned dependency for
the target (downloaded for its platform; packages published only as source are built here into
pure-Python wheels), Qunzhi's own wheel with its vendored assets (ECharts, templates, the
migrations), the deploy/ folder, ``install.sh`` and ``SHA256SUMS``. Wheels are cached in
``.bundle-cache/<target>/``, so a second bundle needs no network.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    "x86_64": ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "linux_x86_64"],
    "aarch64": ["manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64", "linux_aarch64"],
}
INSTALL_SH = """#!/bin/sh
# Install Qunzhi from this bundle with no network: sh install.sh [PREFIX] (default /opt/qunzhi)
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
prefix="${1:-/opt/qunzhi}"
want="{python}"
have="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$have" != "$want" ]; then
  echo "本安装包适用于 Python $want，本机 python3 是 $have：请安装 Python $want，或用对应版本重新生成安装包。" >&2
  exit 1
fi
arch="$(uname -m)"
if [ "$arch" != "{arch}" ]; then
  echo "本安装包适用于 {arch}，本机是 $arch：请用 --target py{pyver}-$arch 重新生成安装包。" >&2
  exit 1
fi
(cd "$here" && sha256sum -c --quiet SHA256SUMS)
mkdir -p "$prefix"
python3 -m venv "$prefix/.venv"
"$prefix/.venv/bin/pip" install --quiet --no-index --find-links "$here/wheels" qunzhi
cp -r "$here/deploy" "$prefix/"
echo "已安装到 $prefix：$prefix/.venv/bin/qunzhi --help；部署说明见 $prefix/deploy/README.md"
"""


def pinned() -> list[str]:
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [re.sub(r"\s*#.*$", "", d).strip() for d in spec["project"]["dependencies"]]


def run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def build(target: str, out_dir: Path) -> Path:
    m = re.fullmatch(r"py(\d)(\d+)-(x86_64|aarch64)", target)
    if not m:
        raise SystemExit(f"目标应写成 py311-x86_64 或 py311-aarch64 这样的形式，而不是 {target}")
    pyver, arch = m.group(1) + m.group(2), m.group(3)
    cache = ROOT / ".bundle-cache" / target
    cache.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    # Qunzhi itself, with its package data (static assets, templates, migrations)
    run(pip + ["wheel", "--quiet", "--no-deps", "--wheel-dir", str(cache), str(ROOT)])
    platform_args = [a for p in TARGETS[arch] for a in ("--platform", p)]
    target_args = platform_args + ["--python-version", pyver, "--implementation", "cp", "--abi", f"cp{pyver}",
                                   "--abi", "abi3", "--abi", "none"]
    reqs = pinned()
    # Packages published only as source: build them here (they are pure Python) once, into the cache.
    for req in reqs:
        name = re.split(r"[\[=<>!~ ]", req, maxsplit=1)[0]
        probe = subprocess.run(pip + ["download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", str(cache),
                                      "--find-links", str(cache), *target_args, req],
                               cwd=ROOT, capture_output=True, text=True)
        if probe.returncode != 0:
            print(f"{name}: no wheel for {target}, building a pure-Python one", flush=True)
            run(pip + ["wheel", "--quiet", "--no-deps", "--no-binary", name.split("[")[0], "--wheel-dir", str(cache), req])
    # Everything with its dependencies resolved for the target, from the cache where possible.
    run(pip + ["download", "--quiet", "--only-binary=:all:", "--dest", str(cache), "--find-links", str(cache),
               *target_args, "qunzhi"] + reqs)
    name = f"qunzhi-bundle-{target}"
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / f"{name}.tar.gz"
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp) / name
        (top / "wheels").mkdir(parents=True)
        for whl in cache.glob("*.whl"):
            shutil.copy2(whl, top / "wheels" / whl.name)
        shutil.copytree(ROOT / "deploy", top / "deploy", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (top / "install.sh").write_text(INSTALL_SH.replace("{python}", f"{pyver[0]}.{pyver[1:]}")
                                        .replace("{arch}", arch).replace("{pyver}", pyver), encoding="utf-8")
        (top / "install.sh").chmod(0o755)
        sums = []
        for f in sorted(p for p in top.rglob("*") if p.is_file()):
            sums.append(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.relative_to(top)}")
        (top / "SHA256SUMS").write_text("\n".join(sums) + "\n", encoding="utf-8")
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(top, arcname=name)
    print(f"已生成离线安装包：{archive}（{archive.stat().st_size // (1 << 20)} MB）")
    return archive


def check(archive: Path) -> None:
    """Install the bundle into a fresh prefix with no index and run the CLI from it."""
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        [top] = Path(tmp).iterdir()
        prefix = Path(tmp) / "prefix"
        subprocess.run(["sh", str(top / "install.sh"), str(prefix)], check=True)
        out = subprocess.run([str(prefix / ".venv" / "bin" / "qunzhi"), "--help"], check=True, capture_output=True,
                             text=True).stdout
        if "群治" not in out:
            raise SystemExit("安装后的 qunzhi --help 不对")
        print("离线安装检查通过")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default=f"py{sys.version_info[0]}{sys.version_info[1]}-x86_64")
    ap.add_argument("--out", default=str(ROOT / "dist"))
    ap.add_argument("--check", action="store_true", help="install the bundle offline into a fresh venv afterwards")
    a = ap.parse_args()
    archive = build(a.target, Path(a.out))
    if a.check:
        check(archive)


if __name__ == "__main__":
    main()
