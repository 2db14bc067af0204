"""A write to the IOC page must come from the page itself, and every answer is fenced in.

Each write route is read from the mounted app, so a write added later is checked too (it
must be given a valid body below). A user who may act sends each forged variant; each is
refused (403, before its body is read) and the ledger stays as it was. Then the same request
with this site's origin goes through, which shows the refusal was the origin's doing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import ioc_sample as sample
from tests.airflow_api import SAME_SITE, AirflowApi
from tests.plugins.test_ioc_page_auth import every_route

#: A valid request to each write route: (how the body is sent, the body).
VALID = {
    "/paht/dead-letters/replay": ("data", {"source_id": "QT-3", "agency_code": sample.CA[0]}),
    "/paht/api/dead-letters/replay": ("json", {"source_id": "QT-3"}),
    "/paht/reports/unlink": ("data", {"source": sample.SOURCE, "source_id": "QT-2", "reason": "không phải trùng"}),
    "/paht/api/reports/unlink": ("json", {"source": sample.SOURCE, "source_id": "QT-2", "reason": "không phải trùng"}),
}

FORGED = {
    "no Origin, no Sec-Fetch-Site": {},
    "Origin: null": {"Origin": "null"},
    "another site": {"Origin": "https://elsewhere.example"},
    "another scheme": {"Origin": "https://testserver"},
    "another port": {"Origin": "http://testserver:8080"},
    "a look-alike host": {"Origin": "http://testserver.elsewhere.example"},
    "X-Forwarded-Host names the other site": {"Origin": "http://elsewhere.example", "X-Forwarded-Host": "elsewhere.example"},
    "X-Forwarded-Proto claims https": {"Origin": "https://testserver", "X-Forwarded-Proto": "https"},
    "Sec-Fetch-Site: cross-site": {"Origin": "http://testserver", "Sec-Fetch-Site": "cross-site"},
    "Sec-Fetch-Site: same-site": {"Sec-Fetch-Site": "same-site"},
    "Sec-Fetch-Site: none": {"Sec-Fetch-Site": "none"},
}


@pytest.fixture
def sample_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from paht_bridge.ledger.db import ledger_url, migrate

    monkeypatch.setenv("PAHT_HOME", str(tmp_path))
    monkeypatch.delenv("PAHT_LEDGER_URL", raising=False)
    migrate(ledger_url())
    sample.build(ledger_url())


def writes(api: AirflowApi) -> list[tuple[str, str]]:
    found = [(method, path) for method, path in every_route(api.plugin_app.routes) if method not in ("GET", "HEAD", "OPTIONS")]
    assert {path for _, path in found} == set(VALID), "give each write route a valid body in VALID"
    return found


def send(api: AirflowApi, method: str, path: str, headers: dict[str, str]) -> object:
    kind, body = VALID[path]
    auth = {"Authorization": api.actor_headers["Authorization"]}
    return api.client.request(method, path, follow_redirects=False, headers={**auth, **headers}, **{kind: body})


def ledger_state(api: AirflowApi) -> object:
    read = {"headers": api.headers}
    return [api.client.get(path, **read).json() for path in ("/paht/api/dead-letters", "/paht/api/reports/QT-2",
                                                               "/paht/api/reports/QT-3")]


def test_every_write_without_proof_of_its_origin_is_refused(airflow_api: AirflowApi, sample_ledger: None) -> None:
    before = ledger_state(airflow_api)
    answers = {}
    for method, path in writes(airflow_api):
        for case, headers in FORGED.items():
            answer = send(airflow_api, method, path, headers)
            answers[(path, case)] = (answer.status_code, answer.json()["detail"][:26] if answer.status_code == 403 else answer.text[:200])
    assert set(answers.values()) == {(403, "cross-site request refused")}, \
        {k: v for k, v in answers.items() if v != (403, "cross-site request refused")}
    assert ledger_state(airflow_api) == before


def test_a_write_from_this_site_goes_through(airflow_api: AirflowApi, sample_ledger: None) -> None:
    for method, path in writes(airflow_api):
        for headers in ({"Origin": "http://testserver"}, {"Origin": "HTTP://TestServer:80"}, {"Sec-Fetch-Site": "same-origin"},
                        {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}):
            answer = send(airflow_api, method, path, headers)
            assert answer.status_code in (200, 303, 409), (path, headers, answer.status_code, answer.text[:300])  # 409: QT-2 is not a duplicate


def test_airflows_base_url_is_this_site_too(airflow_api: AirflowApi, sample_ledger: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a proxy that rewrites Host, the operator names the public address in ``[api] base_url``."""
    public = {"Origin": "https://ioc.quangtri.gov.vn"}
    assert send(airflow_api, "POST", "/paht/api/dead-letters/replay", public).status_code == 403
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://ioc.quangtri.gov.vn/airflow")
    assert send(airflow_api, "POST", "/paht/api/dead-letters/replay", public).status_code == 200


def test_json_routes_take_only_application_json(airflow_api: AirflowApi, sample_ledger: None) -> None:
    client, headers = airflow_api.client, airflow_api.actor_headers
    body = b'{"source_id": "QT-3"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        sent = {**headers, "content-type": content_type} if content_type else headers
        answer = client.post("/paht/api/dead-letters/replay", content=body, headers=sent)
        assert answer.status_code == 415, (content_type, answer.status_code, answer.text)
    assert client.get("/paht/api/dead-letters", headers=headers).json()[0]["source_id"] == "QT-3"  # nothing replayed
    answer = client.post("/paht/api/dead-letters/replay", content=body, headers={**headers, "content-type": "application/json; charset=utf-8"})
    assert answer.status_code == 200 and answer.json() == {"replayed": ["PAHT-quangtri_ioc-QT-3"]}


def test_form_routes_take_only_forms(airflow_api: AirflowApi, sample_ledger: None) -> None:
    client, headers = airflow_api.client, airflow_api.actor_headers
    for path in ("/paht/dead-letters/replay", "/paht/reports/unlink"):
        assert client.post(path, json={"all": True}, headers=headers).status_code == 415
        assert client.post(path, content=b"all=true", headers={**headers, "content-type": "text/plain"}).status_code == 415


def assert_fenced(answer: object, where: str) -> None:
    headers = answer.headers
    policy = headers.get("content-security-policy", "")
    assert "frame-ancestors 'self'" in policy and "default-src 'none'" in policy and "script-src" not in policy, where
    assert headers.get("x-frame-options") == "SAMEORIGIN", where
    assert headers.get("cache-control") == "no-store", where
    assert headers.get("x-content-type-options") == "nosniff", where
    if "<style" in answer.text:  # the page's one style block carries this answer's nonce
        nonce = re.search(r"style-src 'nonce-([^']+)'", policy).group(1)
        assert f'<style nonce="{nonce}">' in answer.text, where


def test_every_answer_carries_the_security_headers(airflow_api: AirflowApi, sample_ledger: None) -> None:
    client = airflow_api.client
    for method, path in every_route(airflow_api.plugin_app.routes):
        assert_fenced(client.request(method, path), f"anonymous {method} {path}")  # 401
        if method == "GET":
            for headers in (airflow_api.headers, {**airflow_api.headers, "Accept": "text/html"}):
                assert_fenced(client.get(path, params={"q": "QT-5"}, headers=headers), f"{method} {path}")
        else:
            assert_fenced(send(airflow_api, method, path, {}), f"cross-site {method} {path}")  # 403
            assert_fenced(client.request(method, path, headers={**airflow_api.headers, **SAME_SITE, "Accept": "text/html"}),
                          f"a viewer's {method} {path}")  # 403, the refusal page
    assert_fenced(client.get("/paht/reports", params={"q": "QT-404"}, headers=airflow_api.headers), "404 page")
    nonces = {client.get("/paht/", headers=airflow_api.headers).headers["content-security-policy"] for _ in range(2)}
    assert len(nonces) == 2  # a fresh nonce per answer
