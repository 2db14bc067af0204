"""What a write to the IOC page must show of where it comes from, and what every answer carries.

The login is a cookie a browser sends by itself, so a write also needs proof that this site's
own page sent it (no cross-site form or script), and the page must not be framed or cached
elsewhere:

- **Same origin, strictly**: a write (any method but GET, HEAD, OPTIONS) is accepted only with
  an ``Origin`` equal in scheme, host and port to the request's own origin (or to Airflow's
  ``[api] base_url``), or, without ``Origin``, with ``Sec-Fetch-Site: same-origin``. A
  browser's ``Sec-Fetch-Site`` other than ``same-origin``, ``Origin: null`` and a request with
  neither header are refused. Scripts calling the JSON API send ``Origin`` like a browser.
- **Forwarded headers** are Airflow's business, not ours: the request's scheme is what the
  API server saw, which is ``X-Forwarded-Proto`` only when ``airflow api-server`` runs with
  ``--proxy-headers`` and the proxy is in ``FORWARDED_ALLOW_IPS`` (uvicorn's rule). The host
  is the ``Host`` header, which a proxy passes on (``X-Forwarded-Host`` is never read: Airflow
  does not read it either); behind a proxy that rewrites it, set ``[api] base_url``.
- **Bodies**: JSON routes take only ``application/json`` (``text/plain`` is what a cross-site
  form can send without asking), form routes only form types.
- **Headers on every answer**: a Content Security Policy (no script at all, styles only with
  the answer's nonce, ``frame-ancestors 'self'``: Airflow's own UI frames the page),
  ``X-Frame-Options: SAMEORIGIN``, ``Cache-Control: no-store`` (the trace is not for a shared
  cache or the back button after logout), ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, status
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow.configuration import conf
from paht_bridge.plugins.permissions import Refused

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or URL, ports made explicit; None when it is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def own_origins(request: Request) -> set[tuple[str, str, int]]:
    """The request's own origin (the scheme the server saw, the Host header) and ``[api] base_url``'s."""
    found = set()
    host = request.headers.get("host")
    if host:
        found.add(origin_of(f"{request.url.scheme}://{host}"))
    base_url = conf.get("api", "base_url", fallback=None)
    if base_url:
        found.add(origin_of(base_url))
    return found - {None}


def _refuse(why: str) -> Refused:
    return Refused(f"cross-site request refused: {why}",
                   "Yêu cầu bị từ chối vì không gửi từ chính trang IOC này (kiểm tra chống giả mạo yêu cầu): "
                   "hãy mở lại trang IOC và thao tác từ đó.")


def same_origin(request: Request) -> None:
    """For every write: refuse what this site's own page did not send. Reads pass untouched."""
    if request.method in SAFE_METHODS:
        return
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site is not None and site != "same-origin":
        raise _refuse(f"Sec-Fetch-Site is {site!r}")
    if origin is None:
        if site == "same-origin":
            return
        raise _refuse("a write needs an Origin header (or Sec-Fetch-Site: same-origin)")
    if origin_of(origin) not in own_origins(request):
        raise _refuse(f"Origin {origin!r} is not this site")


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def json_only(request: Request) -> None:
    if _media_type(request) != "application/json":
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the body as Content-Type: application/json")


def form_only(request: Request) -> None:
    if _media_type(request) not in FORM_TYPES:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the form as application/x-www-form-urlencoded")


def security_headers(nonce: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": f"default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self' data:; "
                                   "form-action 'self'; frame-ancestors 'self'; base-uri 'none'",
        "X-Frame-Options": "SAMEORIGIN",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }


class SecurityHeaders:
    """ASGI middleware: a fresh style nonce per request (``request.state.csp_nonce``, for the
    templates) and the headers above on every answer of the app, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in security_headers(nonce).items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
