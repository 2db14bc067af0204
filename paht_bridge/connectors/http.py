"""Shared HTTP plumbing: one reused session per client, explicit timeouts, typed errors.

Every connector sends through ``HttpTransport.request`` so a refused connection, a read
timeout after sending, a 5xx, a 4xx and an HTML error page served with 200 are told
apart the same way everywhere (DESIGN §5).
"""

from __future__ import annotations

from typing import Any

import requests

from paht_bridge.connectors.errors import AmbiguousError, MalformedResponse, PermanentError, TransientError

DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)  # (connect, read) seconds
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


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
    ) -> None:
        self.system = system
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
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
        write, transient for a read (reads are safe to repeat).
        """
        kwargs.setdefault("timeout", self.timeout)
        is_write = method.upper() not in {"GET", "HEAD", "OPTIONS"}
        try:
            response = self.session.request(method, self.url(path), **kwargs)
        except (requests.ConnectTimeout, requests.exceptions.SSLError) as exc:
            raise TransientError(f"could not connect: {exc.__class__.__name__}", system=self.system, operation=operation, ref=ref) from exc
        except requests.ConnectionError as exc:
            # A refused connection never reached the server; a reset mid-exchange might have.
            refused = "refused" in str(exc).lower() or "failed to establish" in str(exc).lower()
            cls = AmbiguousError if (is_write and not refused) else TransientError
            raise cls(f"connection failed: {exc.__class__.__name__}", system=self.system, operation=operation, ref=ref) from exc
        except requests.Timeout as exc:
            cls = AmbiguousError if is_write else TransientError
            raise cls(f"no answer within {kwargs['timeout']}s", system=self.system, operation=operation, ref=ref) from exc
        if response.status_code in ok:
            return response
        detail = _error_detail(response)
        if response.status_code in TRANSIENT_STATUS:
            # A 5xx on a write may come after the server committed; the caller looks up by reference before retrying anyway.
            cls = AmbiguousError if (is_write and response.status_code >= 500) else TransientError
            raise cls(f"HTTP {response.status_code}: {detail}", system=self.system, operation=operation, ref=ref)
        raise PermanentError(f"HTTP {response.status_code}: {detail}", system=self.system, operation=operation, ref=ref)

    def json(self, response: requests.Response, *, operation: str, ref: str | None = None) -> Any:
        """Decode a JSON body; an HTML error page or a truncated body is a typed error."""
        content_type = response.headers.get("Content-Type", "")
        if "json" not in content_type:
            raise MalformedResponse(
                f"expected JSON, got {content_type or 'no content type'}: {response.text[:120]!r}",
                system=self.system, operation=operation, ref=ref,
            )
        try:
            return response.json()
        except ValueError as exc:
            raise MalformedResponse(f"invalid JSON: {exc}", system=self.system, operation=operation, ref=ref) from exc

    def close(self) -> None:
        self.session.close()


def _error_detail(response: requests.Response, limit: int = 300) -> str:
    """The start of an error body, without reading a huge streamed body into memory."""
    try:
        head = next(response.iter_content(limit), b"") if not response._content_consumed else response.content[:limit]  # noqa: SLF001
    except requests.RequestException:
        head = b""
    finally:
        response.close()
    return head[:limit].decode(response.encoding or "utf-8", errors="replace").replace("\n", " ")
