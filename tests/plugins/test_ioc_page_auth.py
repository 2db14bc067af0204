"""Every route of the IOC page is behind Airflow's login (a plugin's app is not, by itself).

The routes are read from the mounted app, so a route added later is checked too. Each is
called anonymously (and, for a method with a body, with a malformed body: FastAPI parses
declared bodies before any dependency, which would answer 422 before the login says 401).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.routing import BaseRoute, Mount, Route

from tests import ioc_sample as sample
from tests.airflow_api import ACTOR, SAME_SITE, USER, AirflowApi

def every_route(routes: list[BaseRoute], prefix: str = "/paht") -> list[tuple[str, str]]:
    """(method, path) for every route of the app and of anything mounted in it, path parameters filled."""
    found = []
    for route in routes:
        if isinstance(route, Mount):
            found += every_route(route.routes, prefix + route.path) or [("GET", f"{prefix}{route.path}/x")]
        elif isinstance(route, Route):
            path = re.sub(r"\{[^}]+\}", "QT-2026-000001", prefix + route.path)
            found += [(method, path) for method in sorted(route.methods or {"GET"}) if method != "HEAD"]
        else:
            pytest.fail(f"a route of a kind this test cannot call: {route!r}")
    return found


@pytest.fixture
def sample_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page reads the ledger under PAHT_HOME: a small, known one."""
    from paht_bridge.ledger.db import ledger_url, migrate

    monkeypatch.setenv("PAHT_HOME", str(tmp_path))
    monkeypatch.delenv("PAHT_LEDGER_URL", raising=False)
    migrate(ledger_url())
    sample.build(ledger_url())


def test_the_plugin_is_mounted_with_its_routes(airflow_api: AirflowApi) -> None:
    routes = every_route(airflow_api.plugin_app.routes)
    assert ("GET", "/paht/") in routes and ("POST", "/paht/api/dead-letters/replay") in routes
    assert len(routes) >= 10
    assert not any(path.endswith(("/docs", "/openapi.json", "/redoc")) for _, path in routes)  # no unprotected docs


def test_an_anonymous_request_to_every_route_gets_401(airflow_api: AirflowApi, sample_ledger: None) -> None:
    client = airflow_api.client
    refused = {}
    for method, path in every_route(airflow_api.plugin_app.routes):
        calls = [{}, {"params": {"q": "QT-1", "source": "x"}}]
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            calls += [{"content": b"{not json", "headers": {"content-type": "application/json"}},
                      {"data": {"all": "true"}}, {"json": {"all": True}}]
        for call in calls:
            answer = client.request(method, path, follow_redirects=False, **call)
            refused[(method, path, str(call))] = answer.status_code
    assert refused and set(refused.values()) == {401}, {k: v for k, v in refused.items() if v != 401}


def test_a_browser_without_login_is_pointed_to_airflows_login_page(airflow_api: AirflowApi) -> None:
    answer = airflow_api.client.get("/paht/", headers={"accept": "text/html"})
    assert answer.status_code == 401 and "/auth/login" in answer.text


def test_a_forged_token_is_refused(airflow_api: AirflowApi) -> None:
    for headers in ({"Authorization": "Bearer not-a-jwt"}, {"Cookie": "_token=not-a-jwt"}):
        assert airflow_api.client.get("/paht/api/runs", headers=headers).status_code in (401, 403)


def test_a_logged_in_user_sees_every_page(airflow_api: AirflowApi, sample_ledger: None) -> None:
    client, headers = airflow_api.client, airflow_api.headers
    page = client.get("/paht/", headers=headers)
    assert page.status_code == 200 and "Phiên đồng bộ gần đây" in page.text
    assert 'data-agency="000.00.01.H45"' in page.text and 'data-ref="PAHT-quangtri_ioc-QT-3"' in page.text
    # A viewer sees the dead letter, not the buttons she may not use; a user who may act sees them.
    assert "/paht/dead-letters/replay" not in page.text and 'data-testid="read-only"' in page.text
    acting = client.get("/paht/", headers=airflow_api.actor_headers).text
    assert "Gửi lại tất cả (1)" in acting and 'data-testid="read-only"' not in acting
    assert "created_at: Field required" in page.text  # the quarantine, with its reason
    report = client.get("/paht/reports", params={"q": "QT-5"}, headers=headers)
    assert report.status_code == 200 and "PAHT-quangtri_ioc-QT-5-R1" in report.text
    assert client.get("/paht/reports", params={"q": "QT-404"}, headers=headers).status_code == 404
    for path in ("/paht/api/runs", "/paht/api/figures", "/paht/api/timeline", "/paht/api/dead-letters", "/paht/api/quarantine",
                 "/paht/api/reports/QT-1"):
        assert client.get(path, headers=headers).status_code == 200, path
    shown = page.text + report.text
    for secret in (sample.ERROR_PHONE, sample.SAME_PERSON[1], sample.OTHER_PERSON[0], sample.QUARANTINED_PERSON[1]):
        assert secret not in shown


def test_replaying_dead_letters_from_the_page(airflow_api: AirflowApi, sample_ledger: None) -> None:
    client, headers = airflow_api.client, airflow_api.actor_headers
    assert client.post("/paht/api/dead-letters/replay", json={}, headers=headers).status_code == 422  # "all" must be said
    cross_site = client.post("/paht/dead-letters/replay", data={"all": "true"}, follow_redirects=False,
                             headers={**headers, "Origin": "https://elsewhere.example"})
    assert cross_site.status_code == 403
    answer = client.post("/paht/dead-letters/replay", data={"source_id": "QT-3", "agency_code": sample.CA[0]},
                         follow_redirects=False, headers=headers)
    assert answer.status_code == 303 and answer.headers["location"] == "/paht/?replayed=1#dead-letters"
    assert client.post("/paht/api/dead-letters/replay", json={"all": True}, headers=headers).json() == {"replayed": []}
    trace = client.get("/paht/api/reports/QT-3", headers=headers).json()
    assert trace["events"][-1]["kind"] == "replayed" and trace["events"][-1]["run_id"] == f"ioc-page:{ACTOR}"
    assert trace["deliveries"][0]["state"] == "unknown"  # looked up by its reference before any new send


def test_a_viewer_may_read_but_not_replay(airflow_api: AirflowApi, sample_ledger: None) -> None:
    client, viewer = airflow_api.client, {**airflow_api.headers, **SAME_SITE}
    before = client.get("/paht/api/reports/QT-3", headers=viewer).json()
    by_form = client.post("/paht/dead-letters/replay", data={"all": "true"}, follow_redirects=False,
                          headers={**viewer, "Accept": "text/html"})
    assert by_form.status_code == 403 and 'data-testid="refused"' in by_form.text and "chỉ có quyền xem" in by_form.text
    by_api = client.post("/paht/api/dead-letters/replay", json={"all": True}, headers=viewer)
    assert by_api.status_code == 403 and "paht_deliver" in by_api.json()["detail"] and USER in by_api.json()["detail"]
    assert client.post("/paht/api/dead-letters/replay", content=b"{not json", headers={**viewer, "content-type": "application/json"}
                       ).status_code == 403  # refused before its body is read
    assert client.get("/paht/api/reports/QT-3", headers=viewer).json() == before
    assert client.get("/paht/api/dead-letters", headers=viewer).json()[0]["source_id"] == "QT-3"
