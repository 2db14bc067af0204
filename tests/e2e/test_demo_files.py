"""What the demo leaves on disk holds no connection password, and only its owner can read it.

The stand-ins' passwords reach Airflow through the environment (``AIRFLOW_CONN_*``); the
sandbox used to print them as ``export`` lines into ``demo.log``. Every file the demo left is
searched byte for byte (logs, the URLs file, both databases), and every file and folder's
permission bits are checked as the demo left them.
"""

from __future__ import annotations

import pytest

from paht_bridge.sandbox.stack import CITIZEN_KEY, REST_TOKEN, SOAP_PASSWORD
from tests.demo_run import DemoRun

pytestmark = pytest.mark.e2e

PASSWORDS = {CITIZEN_KEY: "the citizen apps' API key", SOAP_PASSWORD: "the SOAP systems' password",
             REST_TOKEN: "the REST system's token"}


def test_no_file_the_demo_writes_holds_a_connection_password(demo_run: DemoRun) -> None:
    files = [name for name in demo_run.left if not name.endswith("/")]
    assert {"demo.log", "sandbox-urls.json", "ledger.sqlite", "airflow/airflow.db"} <= set(files), files
    found = [f"{name}: {what}" for name in files for secret, what in PASSWORDS.items()
             if (demo_run.home / name).exists() and secret.encode() in (demo_run.home / name).read_bytes()]
    assert found == []
    assert not any(secret in demo_run.stdout + demo_run.stderr for secret in PASSWORDS)  # nor on the screen


def test_everything_the_demo_leaves_is_readable_by_its_owner_alone(demo_run: DemoRun) -> None:
    shared = {name: oct(mode) for name, mode in demo_run.left.items() if mode & 0o077}
    assert shared == {}
    assert demo_run.left["demo.log"] == 0o600 and demo_run.left["sandbox-urls.json"] == 0o600
