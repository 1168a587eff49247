"""Every pure module imports on its own, first, in a fresh interpreter: a circular import between
the rules, their registry and the labels shows only when a caller happens to import the wrong
one first (governance.rules_activity once needed governance.labels at import time)."""
from __future__ import annotations

import pkgutil
import subprocess
import sys

import governance
import nlu


def test_each_pure_module_imports_first():
    names = [f"{pkg.__name__}.{m.name}" for pkg in (governance, nlu) for m in pkgutil.iter_modules(pkg.__path__)]
    code = ("import importlib, sys\nbad = []\nfor n in sys.argv[1:]:\n"
            "    for k in [k for k in sys.modules if k.startswith(('governance', 'nlu'))]:\n"
            "        del sys.modules[k]\n"
            "    try:\n        importlib.import_module(n)\n"
            "    except ImportError as e:\n        bad.append(f'{n}: {e}')\n"
            "print('\\n'.join(bad))\nsys.exit(1 if bad else 0)\n")
    done = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(names) > 15
