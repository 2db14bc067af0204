"""Airflow's API app for plugin tests: ``create_app()`` in this process, or ``airflow api-server``.

SimpleAuthManager with real users and a password file, never its "all admins" mode: that
mode adds a token to every request, so a route missing its login would still look fine.
Two users: ``USER`` has the lowest role (viewer: reads, may not act) and ``ACTOR`` the lowest
role Airflow lets edit DAG runs (user), which is what acting on the IOC page asks for.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

USER, PASSWORD = "ioc-staff", "mat-khau-chi-de-kiem-thu"
ACTOR, ACTOR_PASSWORD = "ioc-operator", "mat-khau-nguoi-thao-tac"
#: What a browser sends with a write from the page (the test client's own origin).
SAME_SITE = {"Origin": "http://testserver"}
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def airflow_env(home: Path) -> dict[str, str]:
    """A private Airflow on SQLite under ``home`` with two known users (a viewer, an actor)."""
    passwords = home / "simple_auth_passwords.json"
    if not passwords.exists():
        home.mkdir(parents=True, exist_ok=True)
        passwords.write_text(json.dumps({USER: PASSWORD, ACTOR: ACTOR_PASSWORD}))
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:viewer,{ACTOR}:user",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": "paht-test-jwt-secret-not-for-production-" + "x" * 40,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }


def migrate_airflow_db(env: dict[str, str]) -> None:
    """Token checks read Airflow's ``revoked_token`` table, so the metadata DB must exist."""
    result = subprocess.run([AIRFLOW, "db", "migrate"], env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


@dataclass
class AirflowApi:
    client: object  # fastapi.testclient.TestClient over the whole Airflow API app
    headers: dict[str, str]  # the logged-in viewer's Authorization header
    plugin_app: object  # the IOC page's own FastAPI app, as mounted
    actor_headers: dict[str, str]  # the logged-in actor's Authorization header, and this site's Origin


@contextmanager
def airflow_api(home: Path) -> Iterator[AirflowApi]:
    """``create_app()`` over a migrated metadata DB under ``home``, logged in as ``USER`` and as ``ACTOR``."""
    env = airflow_env(home)
    migrate_airflow_db(env)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from airflow import settings
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient
    from starlette.routing import Mount

    settings.configure_vars()
    settings.reconfigure_orm()
    purge_cached_app()
    try:
        app = create_app()
        client = TestClient(app)
        tokens = {}
        for user, password in ((USER, PASSWORD), (ACTOR, ACTOR_PASSWORD)):
            answer = client.post("/auth/token", json={"username": user, "password": password})
            assert answer.status_code == 201, answer.text
            tokens[user] = answer.json()["access_token"]
        plugin = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "/paht")
        yield AirflowApi(client=client, headers={"Authorization": f"Bearer {tokens[USER]}"}, plugin_app=plugin,
                         actor_headers={"Authorization": f"Bearer {tokens[ACTOR]}", **SAME_SITE})
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        purge_cached_app()
        settings.configure_vars()
        settings.reconfigure_orm()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def api_server_process(env: dict[str, str], log_path: Path, timeout: float = 120) -> Iterator[str]:
    """``airflow api-server`` (core API and plugins, one worker) with ``env`` over a clean
    environment; yields its base URL once it answers, stops its whole process group after."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PAHT_"))}
    with open(log_path, "wb") as log:
        server = subprocess.Popen([AIRFLOW, "api-server", "-H", "127.0.0.1", "-p", str(port), "--apps", "core", "-w", "1"],
                                  env={**clean, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the API server did not start; see {log_path}:\n{log_path.read_text()[-3000:]}") from None
                time.sleep(0.5)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
