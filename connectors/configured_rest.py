"""Any REST/JSON document system, from a ``rest:`` section in the deployment mapping.

Each operation is an endpoint template (``api/v2/van-ban-den/{document_id}``), query,
header and body specs, and JSON paths into the answer. Requests go through the shared
``HttpTransport`` (timeouts, bounded reads, typed failures: a lost answer to a POST is
ambiguous, so delivery looks the document up before any retry); a multipart body streams
attachments from the spool, never holding a video in memory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from paht_bridge.connectors.answers import Answer, JsonAnswer
from paht_bridge.connectors.configured import ConfiguredDocumentSystem
from paht_bridge.connectors.errors import PermanentError
from paht_bridge.connectors.http import DEFAULT_TIMEOUT, HttpTransport
from paht_bridge.connectors.limits import DEFAULT_LIMITS, ConnectorLimits
from paht_bridge.connectors.messages import printable
from paht_bridge.connectors.rest_docs import MultipartBody
from paht_bridge.canonical import LocalAttachment
from paht_bridge.config.wire import Operation, RestCall, RestWire


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

    def exchange(self, op_name: str, op: Operation, context: dict[str, Any], ref: str | None,
                 attachments: Sequence[LocalAttachment] = ()) -> Answer:
        assert isinstance(op, RestCall)
        path = op.path.format_map({k: quote(str(v), safe="") for k, v in context.items() if isinstance(v, (str, int))})
        params = {k: str(v) for k, v in self.request_for(op_name, op, context, ref, "query").items()}
        headers = {k: str(v) for k, v in self.request_for(op_name, op, context, ref, "headers").items()}
        ok = op.ok + ((op.rejected,) if op.rejected else ())
        kwargs: dict[str, Any] = {"params": params, "headers": headers}
        body = None
        if op.body != "none":
            document = json.dumps(self.request_for(op_name, op, context, ref), ensure_ascii=False, default=_json_default).encode()
            if op.body == "json":
                kwargs["data"] = document
                headers["Content-Type"] = "application/json"
            else:
                body = MultipartBody([(op.json_part, "application/json", document)], [(op.file_part, a) for a in attachments])
                kwargs["data"] = body
                headers["Content-Type"] = body.content_type
        try:
            response = self._http.request(op.method, path, operation=op_name, ref=ref, ok=ok, **kwargs)
        finally:
            if body is not None:
                body.close()
        if op.rejected and response.status_code == op.rejected:
            raise PermanentError(f"rejected as invalid (HTTP {op.rejected}): {printable(response.text, 500)}", system=self.name, operation=op_name, ref=ref)
        if not response.content:
            return JsonAnswer({})
        return JsonAnswer(self._http.json(response, operation=op_name, ref=ref))

