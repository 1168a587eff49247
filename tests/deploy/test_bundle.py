"""make bundle: the install script refuses a machine it was not made for; the pins are pyproject's.
(The full offline install runs by `make bundle-check`, outside CI: it downloads every wheel once.)"""
import platform
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import bundle  # noqa: E402


def test_the_bundle_pins_what_pyproject_pins():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    assert len(bundle.pinned()) == len(deps) and all("==" in d for d in bundle.pinned())
    assert not [d for d in bundle.pinned() if "#" in d]


def _script(tmp_path, python: str, arch: str) -> Path:
    top = tmp_path / "b"
    (top / "wheels").mkdir(parents=True)
    sh = top / "install.sh"
    sh.write_text(bundle.INSTALL_SH.replace("{python}", python).replace("{arch}", arch)
                  .replace("{pyver}", python.replace(".", "")), encoding="utf-8")
    (top / "SHA256SUMS").write_text("", encoding="utf-8")
    return sh


def test_install_refuses_another_python_or_architecture(tmp_path):
    here = platform.machine()
    other = "aarch64" if here == "x86_64" else "x86_64"
    mine = "%d.%d" % sys.version_info[:2]
    done = subprocess.run(["sh", str(_script(tmp_path / "1", "3.99", here)), str(tmp_path / "p1")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Python 3.99" in done.stderr and not (tmp_path / "p1").exists()
    done = subprocess.run(["sh", str(_script(tmp_path / "2", mine, other)), str(tmp_path / "p2")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and f"适用于 {other}" in done.stderr and not (tmp_path / "p2").exists()
