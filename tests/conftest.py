"""Shared fixtures: a fresh ledger on SQLite or PostgreSQL, the sandbox stack on loopback.

The PostgreSQL ledger tests need the server at 127.0.0.1:5432 (``.ci/run`` starts it);
when it is missing they fail with the reason rather than skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_ADMIN = os.environ.get("PAHT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(autouse=True, scope="session")
def _private_homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep every test's ledger key, Airflow home and ledger out of the working tree."""
    home = tmp_path_factory.mktemp("paht-home")
    saved = {k: os.environ.get(k) for k in ("PAHT_HOME", "AIRFLOW_HOME", "PAHT_LEDGER_URL")}
    os.environ["PAHT_HOME"] = str(home)
    os.environ.setdefault("AIRFLOW_HOME", str(home / "airflow"))
    os.environ.pop("PAHT_LEDGER_URL", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _check_postgres() -> None:
    import psycopg

    try:
        psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5).close()
    except psycopg.OperationalError as exc:  # a broken machine is reported loudly, never skipped
        pytest.fail(f"PostgreSQL is needed at {POSTGRES_ADMIN} for the ledger tests: {exc}")


_created_databases: list[str] = []


def fresh_postgres_database() -> str:
    """A new, empty database on the PostgreSQL server; dropped when the session ends."""
    import psycopg

    _check_postgres()
    name = f"paht_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    _created_databases.append(name)
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _created_databases:
        return
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        for name in _created_databases:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated ledger on each engine."""
    from paht_bridge.ledger.db import migrate

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}" if request.param == "sqlite" else fresh_postgres_database()
    migrate(url)
    return url


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator["SandboxStack"]:  # noqa: F821 - imported lazily
    """Every stand-in with no seeded reports (each test loads its own), and the Airflow
    Connections pointed at them."""
    from paht_bridge.sandbox.stack import SandboxStack

    stack = SandboxStack(seed_reports=False)
    urls = stack.start()
    for key, value in urls.connection_env().items():
        monkeypatch.setenv(key, value)
    yield stack
    stack.stop()


@pytest.fixture
def seeded_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator["SandboxStack"]:  # noqa: F821 - imported lazily
    """Every stand-in with its seeded reports, and the Airflow Connections pointed at them."""
    from paht_bridge.sandbox.stack import SandboxStack

    stack = SandboxStack()
    urls = stack.start()
    for key, value in urls.connection_env().items():
        monkeypatch.setenv(key, value)
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def airflow_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator["AirflowApi"]:  # noqa: F821 - imported lazily
    """Airflow's whole API app (``create_app()``) in this process, with a logged-in user; built once (~15 s)."""
    from tests.airflow_api import airflow_api as build

    with build(tmp_path_factory.mktemp("airflow-api")) as api:
        yield api


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> "DemoRun":  # noqa: F821 - imported lazily
    """``paht demo`` run once for the session in its own process (~1 min), as a user would run it."""
    from tests.demo_run import run_demo

    return run_demo(tmp_path_factory.mktemp("demo-run") / "demo")


@pytest.fixture(scope="session")
def role_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator["RoleServer"]:  # noqa: F821 - imported lazily
    """A real ``airflow api-server`` with a user of each role (viewer, user, op, admin), logged in; started once (~30 s)."""
    from tests.role_server import role_server as start

    with start(tmp_path_factory.mktemp("role-server")) as server:
        yield server
