"""A real ``airflow api-server`` with one user of each of Airflow's roles, over a small ledger.

The users are declared as Airflow is configured in production with SimpleAuthManager
(``[core] simple_auth_manager_users = name:role,…``); Airflow itself generates their
passwords and writes them to ``[core] simple_auth_manager_passwords_file``, which is where
the tests read them. The ledger is ``tests/ioc_sample.py``'s (one dead letter: QT-3) plus
reports of one pothole taken in from the stand-in citizen app with duplicates on, so there
are links to undo. It is built in a process of its own under the server's ``PAHT_HOME``, so
it is encrypted with the key the server reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from sqlalchemy import select, update

from tests.airflow_api import airflow_env, api_server_process, migrate_airflow_db

ROLES = ("viewer", "user", "op", "admin")
REPO = Path(__file__).resolve().parents[1]


@dataclass
class RoleServer:
    base: str
    ledger_url: str
    passwords: dict[str, str]  # user name → the password Airflow generated
    tokens: dict[str, str]  # user name → a JWT from POST /auth/token

    @staticmethod
    def user(role: str) -> str:
        return f"ioc-{role}"

    def session(self, role: str) -> requests.Session:
        """A browser-like session for ``role``: the login cookie Airflow's UI uses, this site's Origin."""
        from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

        session = requests.Session()
        session.cookies.set(COOKIE_NAME_JWT_TOKEN, self.tokens[self.user(role)])
        session.headers["Origin"] = self.base
        return session


def build_ledger() -> None:
    """The sample ledger and the pothole duplicates (``python -m tests.role_server``, under the server's env)."""
    from paht_bridge.config.deployment import Duplicates, deployment
    from paht_bridge.connectors.hooks import AirflowConnectors
    from paht_bridge.ledger.db import ledger_url, migrate, sessions
    from paht_bridge.sandbox.stack import SandboxStack
    from paht_bridge.steps import StepContext, ingest
    from tests import ioc_sample
    from tests.integration.test_duplicate_reports import SOURCE, pothole_reports

    url = ledger_url()
    migrate(url)
    ioc_sample.build(url)
    stack = SandboxStack(seed_reports=False)
    os.environ.update(stack.start().connection_env())
    try:
        for first in (9031, 9041, 9051):
            for report in pothole_reports(first):
                stack.citizen_states[SOURCE].add_report(report)
        mapping = deployment("quang_tri").model_copy(update={"duplicates": Duplicates(enabled=True)})
        ingest(StepContext(mapping=mapping, sessions=sessions(url), connectors=AirflowConnectors(mapping), run_id="dup"))
    finally:
        stack.stop()


@contextmanager
def role_server(home: Path) -> Iterator[RoleServer]:
    """Airflow's home, the ledger and the server under ``home``; every user logged in over HTTP."""
    users = ",".join(f"{RoleServer.user(role)}:{role}" for role in ROLES)
    passwords_file = home / "airflow" / "passwords.json.generated"
    env = {**airflow_env(home / "airflow"), "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": users,
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
           "PAHT_HOME": str(home), "PAHT_LEDGER_URL": f"sqlite:///{home / 'ledger.sqlite'}"}
    migrate_airflow_db(env)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PAHT_"))}
    built = subprocess.run([sys.executable, "-m", "tests.role_server"], env={**clean, **env}, cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    # Each allowed role undoes two links, the browser test one more, and the viewer's refusals need one left.
    assert len(linked_reports(env["PAHT_LEDGER_URL"])) >= 8, "too few duplicate links to undo"
    with api_server_process(env, home / "api-server.log") as base:
        passwords = json.loads(passwords_file.read_text())
        tokens = {}
        for user, password in passwords.items():
            answer = requests.post(f"{base}/auth/token", json={"username": user, "password": password}, timeout=30)
            assert answer.status_code == 201, answer.text
            tokens[user] = answer.json()["access_token"]
        assert set(tokens) == {RoleServer.user(role) for role in ROLES}
        yield RoleServer(base=base, ledger_url=env["PAHT_LEDGER_URL"], passwords=passwords, tokens=tokens)


# -- the ledger, read and set directly (no key needed: only plain columns) ----------------------


def ledger_snapshot(url: str) -> tuple[object, ...]:
    """Everything an action could change: every event, every delivery's state, every link."""
    from paht_bridge.ledger.db import sessions
    from paht_bridge.ledger.models import DeliveryRow, EventRow, ReportRow

    with sessions(url)() as session:
        return (session.execute(select(EventRow.id, EventRow.kind, EventRow.run_id)).all(),
                session.execute(select(DeliveryRow.id, DeliveryRow.state, DeliveryRow.tries)).all(),
                session.execute(select(ReportRow.id, ReportRow.duplicate_of, ReportRow.status)).all())


def dead_again(url: str, source_id: str = "QT-3") -> str:
    """Put the sample's dead letter back to dead (a test replays it once per role); its reference."""
    from paht_bridge.ledger.db import sessions
    from paht_bridge.ledger.models import DeliveryRow, ReportRow

    with sessions(url).begin() as session:
        report_id = session.scalar(select(ReportRow.id).where(ReportRow.source_id == source_id))
        session.execute(update(DeliveryRow).where(DeliveryRow.report_id == report_id).values(state="dead"))
        return session.scalar(select(DeliveryRow.external_ref).where(DeliveryRow.report_id == report_id))


def linked_reports(url: str) -> list[tuple[str, str]]:
    """(source, source id) of every report still linked to an earlier one."""
    from paht_bridge.ledger.db import sessions
    from paht_bridge.ledger.models import ReportRow

    with sessions(url)() as session:
        return [tuple(row) for row in session.execute(select(ReportRow.source, ReportRow.source_id)
                                                      .where(ReportRow.duplicate_of.is_not(None)).order_by(ReportRow.id))]


if __name__ == "__main__":
    build_ledger()
