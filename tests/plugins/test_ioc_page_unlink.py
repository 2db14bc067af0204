"""IOC staff see a duplicate link on the report page and undo it there when it is wrong.

A real ledger: the pothole reports of ``test_duplicate_reports`` taken in from the stand-in
citizen app with duplicates on, the page served by Airflow's own API app with a logged-in user.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from paht_bridge.connectors.hooks import AirflowConnectors
from paht_bridge.ledger.db import ledger_url, migrate, sessions
from paht_bridge.ledger.models import EventRow
from paht_bridge.steps import StepContext, deliver, ingest
from paht_bridge.config.deployment import Duplicates, deployment
from paht_bridge.sandbox.stack import SandboxStack
from tests.airflow_api import ACTOR, SAME_SITE, AirflowApi
from tests.integration.test_duplicate_reports import SOURCE, pothole_reports


def test_a_wrong_duplicate_link_is_undone_from_the_report_page(airflow_api: AirflowApi, stack: SandboxStack, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAHT_HOME", str(tmp_path))
    monkeypatch.delenv("PAHT_LEDGER_URL", raising=False)
    url = ledger_url()
    migrate(url)
    mapping = deployment("quang_tri").model_copy(update={"duplicates": Duplicates(enabled=True)})
    ctx = StepContext(mapping=mapping, sessions=sessions(url), connectors=AirflowConnectors(mapping), run_id="dup")
    first, second, _, _ = pothole_reports(9031)
    for report in (first, second):
        stack.citizen_states[SOURCE].add_report(report)
    assert ingest(ctx).counts == {"received": 1, "linked_duplicate": 1}
    client, headers = airflow_api.client, airflow_api.actor_headers

    page = client.get("/paht/reports", params={"q": second["id"]}, headers=headers)
    assert page.status_code == 200 and 'data-testid="linked-to"' in page.text and 'data-testid="unlink"' in page.text
    viewer = client.get("/paht/reports", params={"q": second["id"]}, headers=airflow_api.headers).text
    assert 'data-testid="linked-to"' in viewer and 'data-testid="unlink"' not in viewer and 'data-testid="read-only"' in viewer
    assert f'q={first["id"]}' in page.text  # a link to the report it follows
    for field in (f'name="source" value="{SOURCE}"', f'name="source_id" value="{second["id"]}"', 'name="reason" required'):
        assert field in page.text  # the form posts what the route below is sent
    primary = client.get("/paht/reports", params={"q": first["id"]}, headers=headers).text
    assert 'data-testid="duplicates"' in primary and second["id"] in primary and 'data-testid="unlink"' not in primary

    form = {"source": SOURCE, "source_id": second["id"], "reason": "Ổ gà khác, phía bên kia đường"}
    assert client.post("/paht/reports/unlink", data={**form, "reason": " "}, headers=headers).status_code == 400
    cross_site = client.post("/paht/reports/unlink", data=form, follow_redirects=False,
                             headers={**headers, "Origin": "https://elsewhere.example"})
    assert cross_site.status_code == 403
    by_viewer = client.post("/paht/reports/unlink", data=form, follow_redirects=False, headers={**airflow_api.headers, **SAME_SITE})
    assert by_viewer.status_code == 403 and "paht_deliver" in by_viewer.json()["detail"]
    by_viewer_api = client.post("/paht/api/reports/unlink", json=form, headers={**airflow_api.headers, **SAME_SITE})
    assert by_viewer_api.status_code == 403
    assert 'data-testid="linked-to"' in client.get("/paht/reports", params={"q": second["id"]}, headers=headers).text

    done = client.post("/paht/reports/unlink", data=form, follow_redirects=False, headers=headers)
    assert done.status_code == 303 and done.headers["location"] == f"/paht/reports?q={second['id']}&source={SOURCE}&unlinked=true"
    after = client.get(done.headers["location"], headers=headers).text
    assert 'data-testid="unlinked"' in after and 'data-testid="linked-to"' not in after
    assert f"PAHT-{SOURCE}-{second['id']}" in after and "Chờ gửi" in after  # its own delivery, waiting for the next run
    again = client.post("/paht/reports/unlink", data=form, follow_redirects=False, headers=headers)
    assert again.status_code == 409 and 'data-testid="unlink-refused"' in again.text and "không (còn) gộp" in again.text and "not linked" in again.text
    with sessions(url)() as session:
        undone = session.scalar(select(EventRow).where(EventRow.kind == "unlinked_duplicate"))
    assert undone.run_id == f"ioc-page:{ACTOR}" and undone.detail["reason"] == form["reason"]
    again_api = client.post("/paht/api/reports/unlink", json=form, headers=headers)
    assert again_api.status_code == 409 and again_api.json()["detail"]["code"] == "not_linked"

    assert deliver(ctx).counts == {"delivered": 2}
