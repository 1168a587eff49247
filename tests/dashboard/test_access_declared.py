"""Every dashboard and /api route declares who may call it as a FastAPI dependency, and the routes
hold no SQL of their own (their queries live in storage)."""
from __future__ import annotations

import ast
from pathlib import Path

from fastapi.routing import APIRoute

from bot import api
from bot.dashboard import auth
from bot.dashboard import routes as dashboard

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = {"/dashboard/static/{name}", "/dashboard/login", "/dashboard/login/{token}"}


def _calls(dependant) -> set:
    """Every dependency callable in a route's dependency tree."""
    found = set()
    for sub in dependant.dependencies:
        found.add(sub.call)
        found |= _calls(sub)
    return found


def _routes(router):
    return [r for r in router.routes if isinstance(r, APIRoute)]


def test_every_dashboard_route_declares_its_access():
    for route in _routes(dashboard.router):
        calls = _calls(route.dependant)
        if route.path in PUBLIC and "GET" in route.methods:
            continue
        if route.methods & {"POST", "PUT", "PATCH", "DELETE"}:  # every change is checked for its origin
            assert auth.same_origin in calls, (route.path, route.methods)
        if route.path in PUBLIC:
            assert auth.pre_session_form in calls, route.path  # the login forms' double-submit token
        elif route.path == "/dashboard/logout":
            assert auth.session_form in calls
        else:
            assert auth.viewer in calls or auth.admin in calls, route.path


def test_actions_need_an_administrator_and_pages_a_viewer():
    by_path = {r.path: _calls(r.dependant) for r in _routes(dashboard.router)}
    assert auth.admin in by_path["/dashboard/actions/{action}"]
    assert auth.session_form in by_path["/dashboard/actions/{action}"]  # CSRF token of the session
    for path in ("/dashboard", "/dashboard/groups", "/dashboard/findings", "/dashboard/audit",
                 "/dashboard/download/report.{fmt}", "/dashboard/api/charts.json", "/dashboard/trends",
                 "/dashboard/unit"):
        assert auth.viewer in by_path[path] and auth.admin not in by_path[path], path
    assert auth.admin_page in by_path["/dashboard/merge"]  # the merge form: administrators only


def test_api_routes_need_the_admin_token():
    for route in _routes(api.router):
        assert auth.admin_token in _calls(route.dependant), route.path


def test_routes_hold_no_sql():
    """The dashboard's and the API's web modules build no query: from SQLAlchemy they take at most
    the ``Session`` type, and the routes do not touch the table models."""
    for path in [*sorted((ROOT / "bot" / "dashboard").glob("*.py")), ROOT / "bot" / "api.py", ROOT / "bot" / "metrics.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("sqlalchemy") for a in node.names), path.name
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                assert (node.module, [a.name for a in node.names]) == ("sqlalchemy.orm", ["Session"]), path.name
            elif isinstance(node, ast.ImportFrom) and path.name in ("routes.py", "api.py", "metrics.py"):
                assert node.module != "storage.models", path.name
