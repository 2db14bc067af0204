"""Any REST/JSON document system, from a ``rest:`` section in the deployment mapping (or its preset).

Each operation is an endpoint template (``api/v2/van-ban-den/{document_id}``), query,
header and body specs, and JSON paths into the answer. Requests go through the shared
``HttpTransport`` (timeouts, bounded reads, typed failures: a lost answer to a POST is
ambiguous, so delivery looks the document up before any retry); a multipart body streams
attachments from the spool, never holding a video in memory. A refusal (the call's
``rejected`` status) is read by the mapping's ``refusal`` paths, so the dead-letter reason
names the fields the vendor refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

import requests

from paht_bridge.connectors.answers import Answer, JsonAnswer, text
from paht_bridge.connectors.configured import ConfiguredDocumentSystem
from paht_bridge.connectors.errors import PermanentError
from paht_bridge.connectors.http import DEFAULT_TIMEOUT, HttpTransport
from paht_bridge.connectors.limits import DEFAULT_LIMITS, ConnectorLimits
from paht_bridge.connectors.messages import MESSAGE_CHARS, printable
from paht_bridge.connectors.multipart import MultipartBody
from paht_bridge.canonical import LocalAttachment
from paht_bridge.config.wire import Operation, Refusal, RestCall, RestWire

#: Of a refusal: how many refused fields, and how much of each, reach the dead-letter reason.
REFUSED_FIELDS, FIELD_CHARS, REASON_CHARS = 10, 100, 200


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        raise TypeError("bytes cannot go in a JSON body: send attachments as multipart")
    raise TypeError(f"{value.__class__.__name__} is not JSON")


class ConfiguredRestClient(ConfiguredDocumentSystem):
    """A ``DocumentSystem`` for the REST API a ``RestWire`` mapping describes.

    An Airflow hook builds it from a Connection: host → ``base_url``, password → the token
    (``auth: bearer``) or login/password (``auth: basic``), extra ``timeout`` and ``limits``.
    """

    inline_attachments = False

    def __init__(
        self,
        name: str,
        base_url: str,
        wire: RestWire,
        *,
        login: str | None = None,
        password: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        limits: ConnectorLimits = DEFAULT_LIMITS,
    ) -> None:
        self.name = name
        self.wire = wire
        self.limits = limits
        headers = {"Accept": "application/json", "User-Agent": "paht-bridge"}
        if wire.auth == "bearer" and password:
            headers["Authorization"] = f"Bearer {password}"
        self._http = HttpTransport(name, base_url, timeout=timeout, headers=headers, limits=limits)
        if wire.auth == "basic" and login is not None:
            self._http.session.auth = (login, password or "")

    def close(self) -> None:
        self._http.close()

    def exchange(self, op: Operation, context: dict[str, Any], ref: str | None,
                 attachments: Sequence[LocalAttachment] = ()) -> Answer:
        assert isinstance(op, RestCall)
        path = op.path.format_map({k: quote(str(v), safe="") for k, v in context.items() if isinstance(v, (str, int))})
        params = {k: str(v) for k, v in self.request_for(op, context, ref, "query").items()}
        headers = {k: str(v) for k, v in self.request_for(op, context, ref, "headers").items()}
        ok = op.ok + ((op.rejected,) if op.rejected else ())
        kwargs: dict[str, Any] = {"params": params, "headers": headers}
        body = None
        if op.body != "none":
            document = json.dumps(self.request_for(op, context, ref), ensure_ascii=False, default=_json_default).encode()
            if op.body == "json":
                kwargs["data"] = document
                headers["Content-Type"] = "application/json"
            else:
                # Spooled files stream from disk; a part already in memory (the full text of
                # content cut to the vendor's limit) goes as it is.
                blobs = [(op.file_part, part["name"], part["media_type"], part["data"])
                         for part in context.get("attachments") or () if isinstance(part.get("data"), bytes)]
                body = MultipartBody([(op.json_part, "application/json", document)], [(op.file_part, a) for a in attachments], blobs)
                kwargs["data"] = body
                headers["Content-Type"] = body.content_type
        try:
            response = self._http.request(op.method, path, operation=op.name, ref=ref, ok=ok, **kwargs)
        finally:
            if body is not None:
                body.close()
        if op.rejected and response.status_code == op.rejected:
            reason = refusal_reason(response, self.wire.refusal)
            raise PermanentError(f"rejected as invalid (HTTP {op.rejected}): {reason}", system=self.name, operation=op.name, ref=ref)
        if not response.content:
            return JsonAnswer({})
        return JsonAnswer(self._http.json(response, operation=op.name, ref=ref))


def refusal_reason(response: requests.Response, refusal: Refusal | None) -> str:
    """Why the back end refused a request, as its answer says: the refused fields and why,
    else its message, else the start of its text (bounded, printable)."""
    if refusal is not None:
        try:
            answer = JsonAnswer(json.loads(response.content))
        except (ValueError, RecursionError):
            answer = None
        if answer is not None:
            try:
                fields = answer.all(refusal.fields) if refusal.fields else []
            except ValueError:
                fields = []
            named = [(text(item.get(refusal.field)), text(item.get(refusal.reason))) for item in fields[:REFUSED_FIELDS]]
            parts = [f"{printable(str(field), FIELD_CHARS)}: {printable(str(why), REASON_CHARS)}" if why else printable(str(field), FIELD_CHARS)
                     for field, why in named if field]
            if parts:
                return printable("; ".join(parts), 1000)
            for path in refusal.message:
                if message := text(answer.get(path)):
                    return printable(message, MESSAGE_CHARS)
    return printable(response.content[:MESSAGE_CHARS].decode("utf-8", errors="replace"), MESSAGE_CHARS)
