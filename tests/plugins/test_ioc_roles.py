"""Who may act is Airflow's auth manager's answer: real users of every role on a real api-server.

Over HTTP, as Airflow's UI does it (the login cookie and this site's Origin) and as an API
client does (a Bearer token). Every read answers every role; every write is refused to a
viewer, with the ledger unchanged, and done for the roles SimpleAuthManager lets edit DAG
runs (user, op, admin), the trace naming who acted.
"""

from __future__ import annotations

import pytest
import requests

from tests.role_server import ROLES, RoleServer, dead_again, ledger_snapshot, linked_reports

READS = ("/paht/", "/paht/reports?q=QT-5", "/paht/api/runs", "/paht/api/figures", "/paht/api/timeline",
         "/paht/api/reports/QT-1", "/paht/api/dead-letters", "/paht/api/quarantine")
ACTORS = ("user", "op", "admin")
REASON = "Hai ổ gà khác nhau, cách nhau một đoạn"


def api_client(server: RoleServer, role: str) -> requests.Session:
    """A script calling the JSON API: a Bearer token, no cookie, this site's Origin."""
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {server.tokens[server.user(role)]}", "Origin": server.base})
    return session


def last_event(server: RoleServer, source_id: str, kind: str) -> dict:
    trace = api_client(server, "viewer").get(f"{server.base}/paht/api/reports/{source_id}", timeout=30).json()
    return [e for e in trace["events"] if e["kind"] == kind][-1]


def test_every_role_reads_every_page_and_api_route(role_server: RoleServer) -> None:
    for role in ROLES:
        for client in (role_server.session(role), api_client(role_server, role)):
            for path in READS:
                answer = client.get(f"{role_server.base}{path}", timeout=30)
                assert answer.status_code == 200, (role, path, answer.status_code, answer.text[:300])
                assert "frame-ancestors 'self'" in answer.headers["content-security-policy"]
                assert answer.headers["cache-control"] == "no-store"


def test_the_page_offers_actions_only_to_who_may_use_them(role_server: RoleServer) -> None:
    dead_again(role_server.ledger_url)
    source, source_id = linked_reports(role_server.ledger_url)[0]
    for role in ROLES:
        session = role_server.session(role)
        index = session.get(f"{role_server.base}/paht/", timeout=30).text
        report = session.get(f"{role_server.base}/paht/reports", params={"q": source_id, "source": source}, timeout=30).text
        assert 'data-testid="linked-to"' in report and 'data-ref="PAHT-quangtri_ioc-QT-3"' in index  # everyone sees them
        offered = ("/paht/dead-letters/replay" in index, 'data-testid="unlink"' in report)
        assert offered == ((False, False) if role == "viewer" else (True, True)), role


def test_a_viewer_is_refused_every_action_by_page_and_api_and_nothing_changes(role_server: RoleServer) -> None:
    url, base = role_server.ledger_url, role_server.base
    dead_again(url)
    source, source_id = linked_reports(url)[0]
    before = ledger_snapshot(url)
    unlink = {"source": source, "source_id": source_id, "reason": REASON}
    page = role_server.session("viewer")
    for path, form in (("/paht/dead-letters/replay", {"all": "true"}), ("/paht/dead-letters/replay", {"source_id": "QT-3"}),
                       ("/paht/reports/unlink", unlink)):
        answer = page.post(f"{base}{path}", data=form, headers={"Accept": "text/html"}, allow_redirects=False, timeout=30)
        assert answer.status_code == 403 and 'data-testid="refused"' in answer.text and "chỉ có quyền xem" in answer.text, path
    api = api_client(role_server, "viewer")
    for path, body in (("/paht/api/dead-letters/replay", {"all": True}), ("/paht/api/reports/unlink", unlink)):
        answer = api.post(f"{base}{path}", json=body, timeout=30)
        assert answer.status_code == 403, (path, answer.status_code, answer.text)
        assert "ioc-viewer" in answer.json()["detail"] and "paht_deliver" in answer.json()["detail"]
    assert ledger_snapshot(url) == before


@pytest.mark.parametrize("role", ACTORS)
def test_a_role_that_may_edit_dag_runs_replays_and_unlinks_by_page_and_api(role_server: RoleServer, role: str) -> None:
    url, base, user = role_server.ledger_url, role_server.base, role_server.user(role)
    page, api = role_server.session(role), api_client(role_server, role)

    dead_again(url)
    answer = page.post(f"{base}/paht/dead-letters/replay", data={"source_id": "QT-3"}, allow_redirects=False, timeout=30)
    assert answer.status_code == 303 and answer.headers["location"] == "/paht/?replayed=1#dead-letters"
    assert last_event(role_server, "QT-3", "replayed")["run_id"] == f"ioc-page:{user}"
    reference = dead_again(url)
    assert api.post(f"{base}/paht/api/dead-letters/replay", json={"source_id": "QT-3"}, timeout=30).json() == {"replayed": [reference]}

    source, source_id = linked_reports(url)[0]
    answer = page.post(f"{base}/paht/reports/unlink", data={"source": source, "source_id": source_id, "reason": REASON},
                       allow_redirects=False, timeout=30)
    assert answer.status_code == 303 and (source, source_id) not in linked_reports(url)
    assert last_event(role_server, source_id, "unlinked_duplicate")["run_id"] == f"ioc-page:{user}"
    source, source_id = linked_reports(url)[0]
    answer = api.post(f"{base}/paht/api/reports/unlink", json={"source": source, "source_id": source_id, "reason": REASON}, timeout=30)
    assert answer.status_code == 200 and answer.json()["deliveries"] == [f"PAHT-{source}-{source_id}"]
    assert last_event(role_server, source_id, "unlinked_duplicate")["run_id"] == f"ioc-page:{user}"


def test_on_the_real_server_a_write_from_elsewhere_is_refused_even_to_an_admin(role_server: RoleServer) -> None:
    """The login cookie is what a cross-site form would carry: without this site's Origin it is not enough."""
    url, base = role_server.ledger_url, role_server.base
    dead_again(url)
    before = ledger_snapshot(url)
    https_here = base.replace("http://", "https://")
    for headers in ({"Origin": "null"}, {"Origin": "http://elsewhere.example", "X-Forwarded-Host": "elsewhere.example"},
                    {"Origin": https_here, "X-Forwarded-Proto": "https"}, {"Sec-Fetch-Site": "cross-site"}):
        admin = role_server.session("admin")
        admin.headers.update(headers)
        answer = admin.post(f"{base}/paht/dead-letters/replay", data={"all": "true"}, allow_redirects=False, timeout=30)
        assert answer.status_code == 403 and "cross-site request refused" in answer.text, headers
    without_origin = role_server.session("admin")
    del without_origin.headers["Origin"]
    assert without_origin.post(f"{base}/paht/dead-letters/replay", data={"all": "true"}, timeout=30).status_code == 403
    assert ledger_snapshot(url) == before
