"""Shared HTTP plumbing: one reused session per client, explicit timeouts, typed errors.

Every connector sends through ``HttpTransport.request`` so a refused connection, a read
timeout after sending, a 5xx, a 4xx and an HTML error page served with 200 are told
apart the same way everywhere (transient, permanent, ambiguous). Answers are read within the connector's
limits (``ConnectorLimits``): a body over ``max_body_bytes``, one that drips in for longer
than ``max_answer_seconds``, or one cut off before its declared length is a typed error,
never a worker's memory or an unhandled exception.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies

from paht_bridge.connectors.errors import AmbiguousError, MalformedResponse, PermanentError, TransientError
from paht_bridge.connectors.limits import DEFAULT_LIMITS, ConnectorLimits
from paht_bridge.connectors.messages import printable

DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)  # (connect, read) seconds
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
READ_CHUNK = 64 * 1024
MAX_INT_DIGITS = 1000  # longer integers become +inf, which every field refuses, instead of failing a whole page
#: A request that cannot be sent at all: the configuration or the URL is wrong, retrying cannot help.
UNSENDABLE = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.InvalidJSONError,
)


class SettledSession(requests.Session):
    """A ``requests.Session`` that reads the environment once per host, not once per request.

    requests looks for proxy variables and a CA bundle in ``os.environ`` on every request:
    about 0.1 ms each with a few dozen variables (more in an Airflow worker), some 7 % of a
    create at a stand-in on loopback. The variables are the same for a task's whole life, so
    what they say for a host is kept. ``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE`` and
    ``CURL_CA_BUNDLE`` mean what they mean to requests, read when the session is made.
    """

    def __init__(self) -> None:
        super().__init__()
        self._environ_proxies: dict[tuple[str, str, str | None], dict[str, str]] = {}
        self._environ_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")

    def merge_environment_settings(self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict[str, Any]:
        """``requests.Session.merge_environment_settings`` with the environment's answer kept per host."""
        proxies = dict(proxies or {})
        if self.trust_env:
            no_proxy = proxies.get("no_proxy")
            parts = urlsplit(url.decode() if isinstance(url, bytes) else url or "")
            key = (parts.scheme, parts.netloc, no_proxy)
            found = self._environ_proxies.get(key)
            if found is None:
                found = self._environ_proxies[key] = get_environ_proxies(url, no_proxy=no_proxy)
            for name, value in found.items():
                proxies.setdefault(name, value)
            if verify is True or verify is None:
                verify = self._environ_bundle or verify
        return {"proxies": merge_setting(proxies, self.proxies), "stream": merge_setting(stream, self.stream),
                "verify": merge_setting(verify, self.verify), "cert": merge_setting(cert, self.cert)}


class HttpTransport:
    """A ``requests.Session`` bound to one base URL and one system name."""

    def __init__(
        self,
        system: str,
        base_url: str,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        headers: dict[str, str] | None = None,
        session: requests.Session | None = None,
        pool_size: int = 8,
        limits: ConnectorLimits = DEFAULT_LIMITS,
    ) -> None:
        self.system = system
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.limits = limits
        self.session = session or SettledSession()
        adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if headers:
            self.session.headers.update(headers)

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        ref: str | None = None,
        ok: tuple[int, ...] = (200, 201),
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request; return the response when its status is in ``ok``.

        A connect error or timeout means the request never arrived (transient). A read
        timeout or a dropped connection means it may have taken effect: ambiguous for a
        write, transient for a read (reads are safe to repeat). Unless ``stream=True`` is
        asked for, the body is read here, within the limits, so a truncated or oversized
        answer fails here with its context.
        """
        kwargs.setdefault("timeout", self.timeout)
        streamed = bool(kwargs.pop("stream", False))
        is_write = method.upper() not in {"GET", "HEAD", "OPTIONS"}
        context = {"system": self.system, "operation": operation, "ref": ref}
        try:
            response = self.session.request(method, self.url(path), stream=True, **kwargs)
        except (requests.ConnectTimeout, requests.exceptions.SSLError) as exc:
            raise TransientError(f"could not connect: {exc.__class__.__name__}", **context) from exc
        except requests.ConnectionError as exc:
            # A refused connection never reached the server; a reset mid-exchange might have.
            refused = "refused" in str(exc).lower() or "failed to establish" in str(exc).lower()
            cls = AmbiguousError if (is_write and not refused) else TransientError
            raise cls(f"connection failed: {exc.__class__.__name__}", **context) from exc
        except requests.Timeout as exc:
            cls = AmbiguousError if is_write else TransientError
            raise cls(f"no answer within {kwargs['timeout']}s", **context) from exc
        except UNSENDABLE as exc:
            raise PermanentError(f"request cannot be sent: {exc.__class__.__name__}: {str(exc)[:200]}", **context) from exc
        except requests.RequestException as exc:
            cls = AmbiguousError if is_write else TransientError
            raise cls(f"request failed: {exc.__class__.__name__}", **context) from exc
        if response.status_code in ok:
            if not streamed:
                self._read_body(response, is_write=is_write, **context)
            return response
        detail = _error_detail(response)
        if response.status_code in TRANSIENT_STATUS:
            # A 5xx on a write may come after the server committed; the caller looks up by reference before retrying anyway.
            cls = AmbiguousError if (is_write and response.status_code >= 500) else TransientError
            raise cls(f"HTTP {response.status_code}: {detail}", system=self.system, operation=operation, ref=ref)
        raise PermanentError(f"HTTP {response.status_code}: {detail}", system=self.system, operation=operation, ref=ref)

    def _read_body(self, response: requests.Response, *, is_write: bool, system: str, operation: str, ref: str | None) -> None:
        """Read the whole body into ``response`` within the size and time limits."""
        context = {"system": system, "operation": operation, "ref": ref}
        cls = AmbiguousError if is_write else TransientError
        try:
            read_bounded(response, max_bytes=self.limits.max_body_bytes, max_seconds=self.limits.max_answer_seconds)
        except BodyTooLarge as exc:
            raise MalformedResponse(str(exc), **context) from exc
        except BodyTooSlow as exc:
            raise cls(str(exc), **context) from exc
        except BodyCutOff as exc:
            # Fewer bytes than Content-Length, a broken chunk, a read timeout mid-body.
            raise cls(str(exc), **context) from exc

    def json(self, response: requests.Response, *, operation: str, ref: str | None = None) -> Any:
        """Decode a JSON body; an HTML error page or a truncated body is a typed error.

        Non-standard ``NaN``/``Infinity`` are read as floats (every field that takes a number
        refuses them); integers too long to be real become ``inf`` rather than failing the page.
        """
        content_type = response.headers.get("Content-Type", "")
        if "json" not in content_type:
            raise MalformedResponse(
                f"expected JSON, got {content_type or 'no content type'}: {printable(response.text[:120])!r}",
                system=self.system, operation=operation, ref=ref,
            )
        try:
            # Bytes, not requests' text: JSON is UTF-8 (RFC 8259), with UTF-16/32 and a BOM
            # recognised; a charset header naming anything else does not make it readable.
            return json.loads(response.content, parse_int=_bounded_int)
        except RecursionError as exc:
            raise MalformedResponse("invalid JSON: nested too deeply", system=self.system, operation=operation, ref=ref) from exc
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise MalformedResponse(f"invalid JSON: {str(exc)[:200]}", system=self.system, operation=operation, ref=ref) from exc

    def close(self) -> None:
        self.session.close()


class BodyTooLarge(Exception):
    """An answer over the size limit (declared or counted)."""


class BodyTooSlow(Exception):
    """An answer still arriving after the time limit: a stalled or dripping server."""


class BodyCutOff(Exception):
    """The connection broke before the whole answer arrived."""


def read_bounded(response: requests.Response, *, max_bytes: int, max_seconds: float) -> bytes:
    """Read a streamed response's whole body into it (``response.content``), within bounds.

    Reads whatever has arrived (``read1``) rather than waiting for full buffers, so a server
    that drips one byte per read-timeout is stopped by ``max_seconds`` in total. A body
    read whole hands its connection back to the pool; any other ending closes it.
    """
    declared = response.headers.get("Content-Length", "")
    raw = response.raw
    chunks: list[bytes] = []
    size = 0
    try:
        if declared.isdigit() and int(declared) > max_bytes:
            raise BodyTooLarge(f"answer of {declared} bytes exceeds the {max_bytes}-byte limit")
        deadline = time.monotonic() + max_seconds
        while True:
            try:
                chunk = raw.read1(READ_CHUNK, decode_content=True)
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError, ValueError) as exc:
                raise BodyCutOff(f"answer cut off after {size} bytes: {exc.__class__.__name__}") from exc
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise BodyTooLarge(f"answer exceeds the {max_bytes}-byte limit")
            if time.monotonic() > deadline:
                raise BodyTooSlow(f"answer still arriving after {max_seconds:g}s ({size} bytes so far)")
            chunks.append(chunk)
    except BaseException:
        response.close()
        raise
    raw.release_conn()  # drained: the session keeps the connection for the next call
    response._content = b"".join(chunks)  # noqa: SLF001 - requests' own cache of the body
    response._content_consumed = True  # noqa: SLF001
    return response._content  # noqa: SLF001


def _bounded_int(text: str) -> int | float:
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else (float("-inf") if text.startswith("-") else float("inf"))


def _error_detail(response: requests.Response, limit: int = 300) -> str:
    """The start of an error body, without reading a huge streamed body into memory."""
    try:
        head = next(response.iter_content(limit), b"") if not response._content_consumed else response.content[:limit]  # noqa: SLF001
    except requests.RequestException:
        head = b""
    finally:
        response.close()
    return printable(head[:limit].decode(response.encoding or "utf-8", errors="replace"))
