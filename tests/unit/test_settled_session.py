"""The HTTP session reads proxies and the CA bundle from the environment as requests does,
once per host instead of once per request."""

from __future__ import annotations

import pytest
import requests

from paht_bridge.connectors import http
from paht_bridge.connectors.http import SettledSession

URLS = ["http://127.0.0.1:8080/api/v1/incoming", "https://docs.example.vn/api", "https://media.example.vn/a.jpg",
        "http://internal.tinh.gov.vn/x"]


@pytest.mark.parametrize("environ", [
    {},
    {"HTTPS_PROXY": "http://proxy.local:3128", "HTTP_PROXY": "http://proxy.local:3128", "NO_PROXY": "127.0.0.1,.gov.vn"},
    {"https_proxy": "http://p2.local:8080", "REQUESTS_CA_BUNDLE": "/etc/ssl/ioc-bundle.pem"},
    {"CURL_CA_BUNDLE": "/etc/ssl/curl.pem", "all_proxy": "socks5://p3.local:1080", "no_proxy": "media.example.vn"},
])
def test_the_same_settings_as_requests(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy", "all_proxy", "ALL_PROXY",
                 "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    settled, plain = SettledSession(), requests.Session()
    for url in URLS:
        for args in [({}, None, None, None), ({"no_proxy": "example.vn"}, True, False, "/tmp/client.pem"),
                     ({"https": "http://explicit:1"}, None, "/tmp/own.pem", None)]:
            twice = [settled.merge_environment_settings(url, dict(args[0]), *args[1:]) for _ in range(2)]
            assert twice[0] == twice[1] == plain.merge_environment_settings(url, dict(args[0]), *args[1:]), (url, args)


def test_the_environment_is_read_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    looked_up: list[str] = []
    real = http.get_environ_proxies
    monkeypatch.setattr(http, "get_environ_proxies", lambda url, no_proxy=None: looked_up.append(url) or real(url, no_proxy))
    session = SettledSession()
    for n in range(50):
        session.merge_environment_settings(f"http://127.0.0.1:8080/api/v1/incoming/{n}", {}, None, None, None)
        session.merge_environment_settings(f"https://media.example.vn/{n}.jpg", {}, None, None, None)
    assert len(looked_up) == 2


def test_an_untrusting_session_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.local:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/ioc-bundle.pem")
    session = SettledSession()
    session.trust_env = False
    settings = session.merge_environment_settings("https://docs.example.vn/api", {}, None, None, None)
    assert settings["proxies"] == {} and settings["verify"] is True
