"""schemathesis against the app's own OpenAPI schema (in-process, ASGI): no endpoint answers 500.

Bounded: a few examples per operation so the whole module stays well under a minute. The heavy
run (benchmarks/run_heavy.py) sets QUNZHI_FUZZ_EXAMPLES higher.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from bot.app import create_app
from bot.runtime import Runtime
from tests.conftest import make_settings

EXAMPLES = int(os.environ.get("QUNZHI_FUZZ_EXAMPLES", "8"))

_tmpdir = tempfile.TemporaryDirectory(prefix="qz-schemathesis-")  # removed when the module is unloaded
_tmp = Path(_tmpdir.name)
_runtime = Runtime(make_settings(database_url=f"sqlite:///{_tmp / 'fuzz.db'}"))
app = create_app(runtime=_runtime, start_scheduler=False)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error(case):
    response = case.call()
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:300])


@schema.parametrize()
@settings(max_examples=max(2, EXAMPLES // 4), deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_with_admin_token(case):
    """The same with the operator's Bearer token, so the code behind the authorization check runs."""
    from sqlalchemy import delete

    from storage.models import LoginThrottle
    from tests.conftest import ADMIN_TOKEN

    with _runtime.db.session() as s:  # the other test's random tokens must not lock this one out (429)
        s.execute(delete(LoginThrottle))
    response = case.call(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:300])
