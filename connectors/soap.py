"""SOAP plumbing shared by every SOAP document system: one zeep client, a guarded transport,
and every failure turned into a typed error.

The WSDL is a local file (never fetched over the network), every call has an explicit
timeout, answers are refused before parsing when too big, too deep or declaring a DTD,
and a failure is transient, permanent or ambiguous by what is known of where it happened:
an operation in ``unsafe`` (one that creates something) that lost its answer is ambiguous,
so the caller looks the document up before any retry. The configured SOAP connector
(``configured_soap``) calls through a ``SoapCaller``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import zeep
from pydantic import ValidationError as PydanticValidationError
from urllib3.exceptions import NewConnectionError
from zeep.exceptions import (
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
    Fault,
    TransportError,
    XMLParseError,
    XMLSyntaxError,
)
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import ValidationError as ZeepValidationError
from zeep.transports import Transport
from zeep.utils import get_media_type

from paht_bridge.connectors.errors import (
    AmbiguousError,
    ConnectorError,
    MalformedResponse,
    PermanentError,
    TransientError,
)
from paht_bridge.connectors.http import BodyCutOff, BodyTooLarge, BodyTooSlow, SettledSession, read_bounded
from paht_bridge.connectors.limits import DEFAULT_LIMITS, ConnectorLimits
from paht_bridge.connectors.messages import MESSAGE_CHARS, printable, validation_summary
from paht_bridge.connectors.xml import XmlRefused, check_untrusted, zeep_settings

CONNECT_TIMEOUT = 5.0
MAX_ANSWER_BYTES = 8 * 1024 * 1024

MISCONFIGURED = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
)
XML_MEDIA_TYPES = frozenset({"text/xml", "application/xml", "application/soap+xml"})


class _UnreadableAnswer(Exception):
    """Raised inside the transport; mapped to MalformedResponse where the context is known."""


class _IncompleteAnswer(requests.exceptions.ReadTimeout):
    """The request arrived but its answer did not, whole (cut off, stalled, dripping): like a read timeout."""


class GuardedTransport(Transport):
    """zeep's Transport, minus body logging and plus checks before zeep parses an answer.

    zeep logs whole request bodies at DEBUG, and ours carry reporters' names and phones.
    An answer larger than ``max_bytes``, nested deeper than ``max_depth``, or declaring a
    DTD or entities (no SOAP answer needs one), is refused before zeep parses it; a non-XML
    answer (a proxy's HTML page, an MTOM multipart this service never sends) is handed on
    as a TransportError so its HTTP status decides what it means. ``answers`` counts the
    answers received, so a failure can be placed before or after the request went out.

    One client serves every sender thread of a target, so what a call leaves behind (its
    answer, the count) is kept per thread: a thread reads its own call's answer, never the
    one another sender received meanwhile (which bound a report to another's document).
    """

    def __init__(
        self, *args: Any, max_bytes: int = MAX_ANSWER_BYTES, max_depth: int = 64, max_seconds: float = 120.0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.max_seconds = max_seconds
        self._mine = threading.local()

    @property
    def answers(self) -> int:
        """Answers received by this thread's calls."""
        return getattr(self._mine, "answers", 0)

    @property
    def last_answer(self) -> bytes:
        """The bytes of this thread's last answer."""
        return getattr(self._mine, "last_answer", b"")

    def post(self, address: str, message: bytes, headers: dict[str, str]) -> requests.Response:
        response = self.session.post(address, data=message, headers=headers, timeout=self.operation_timeout, stream=True)
        self._mine.answers = self.answers + 1
        try:
            read_bounded(response, max_bytes=self.max_bytes, max_seconds=self.max_seconds)
        except BodyTooLarge as exc:
            raise _UnreadableAnswer(str(exc)) from exc
        except (BodyTooSlow, BodyCutOff) as exc:
            raise _IncompleteAnswer(str(exc)) from exc
        self._mine.last_answer = response.content
        media_type = get_media_type(response.headers.get("Content-Type", "text/xml"))
        if media_type not in XML_MEDIA_TYPES:
            raise TransportError(
                f"{media_type} answer instead of SOAP XML: {printable(response.text[:120])!r}",
                status_code=response.status_code, content=response.content,
            )
        if response.content:
            try:
                check_untrusted(response.content, max_bytes=self.max_bytes, max_depth=self.max_depth)
            except XmlRefused as exc:
                raise _UnreadableAnswer(f"answer refused: {exc}") from exc
        return response


class SoapCaller:
    """One SOAP service: a zeep client on a local WSDL, bound to an endpoint, reused per task.

    ``name`` is the system's name in the deployment (errors and logs carry it); ``unsafe``
    the operations whose lost answer may mean something was created. ``last_answer`` holds
    the bytes of the last answer, for connectors that read answers by path.
    """

    def __init__(
        self,
        name: str,
        endpoint: str,
        wsdl: str | Path,
        *,
        binding: str | None = None,
        unsafe: frozenset[str] = frozenset(),
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        max_answer_bytes: int | None = None,
        limits: ConnectorLimits = DEFAULT_LIMITS,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.unsafe = unsafe
        session = SettledSession()
        if username is not None:
            session.auth = (username, password or "")
        # No urllib3 retries: a silent resend of a create is exactly what must not happen.
        adapter = requests.adapters.HTTPAdapter(max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        # zeep has no operation timeout by default; (connect, read) keeps a dead host from holding a worker.
        self.transport = GuardedTransport(
            session=session, timeout=timeout, operation_timeout=(min(CONNECT_TIMEOUT, timeout), timeout),
            max_bytes=max_answer_bytes or limits.max_xml_bytes, max_depth=limits.max_xml_depth, max_seconds=limits.max_answer_seconds,
        )
        self.client = zeep.Client(str(wsdl), transport=self.transport, settings=zeep_settings())
        self.binding = binding or _only_binding(self.client)
        self.service = self.client.create_service(self.binding, endpoint)

    @property
    def last_answer(self) -> bytes:
        return self.transport.last_answer

    def close(self) -> None:
        self.transport.session.close()

    @contextmanager
    def reading(self, operation: str, ref: str | None) -> Iterator[None]:
        """An answer zeep accepted but that cannot become a canonical model (no DocId, a cursor
        that is not a number...) is a malformed answer, with the fields named, not a crash."""
        try:
            yield
        except PydanticValidationError as exc:
            raise MalformedResponse(f"unusable answer: {validation_summary(exc, 'answer')}", system=self.name, operation=operation, ref=ref) from exc
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            raise MalformedResponse(
                f"unusable answer: {exc.__class__.__name__}: {printable(str(exc))[:MESSAGE_CHARS]}", system=self.name, operation=operation, ref=ref
            ) from exc

    def call(self, operation: str, ref: str | None, **kwargs: Any) -> Any:
        """Call ``operation`` (zeep builds the request from the WSDL and reads the answer);
        every failure, whether building, posting or reading, comes out typed."""
        with self._typed(operation, ref):
            return getattr(self.service, operation)(**kwargs)

    @contextmanager
    def _typed(self, operation: str, ref: str | None) -> Iterator[None]:
        """Every failure of building, posting or reading a request as a typed error."""
        answers = self.transport.answers
        try:
            yield
        except (requests.RequestException, ZeepError, _UnreadableAnswer) as exc:
            raise self._classify(exc, operation, ref) from exc
        except Exception as exc:  # noqa: BLE001 - zeep trips over some answers (an empty Body, an odd Fault)
            context = {"system": self.name, "operation": operation, "ref": ref}
            if self.transport.answers > answers:
                # An answer came and could not be read: for SendDocument the document may exist.
                raise MalformedResponse(f"unreadable answer ({exc.__class__.__name__}: {printable(str(exc))[:MESSAGE_CHARS]})", **context) from exc
            raise PermanentError(f"request could not be built ({exc.__class__.__name__}: {printable(str(exc))[:MESSAGE_CHARS]})", **context) from exc

    def _classify(self, exc: Exception, operation: str, ref: str | None) -> ConnectorError:
        """Which kind of failure this is (transient, permanent, ambiguous); the order of the checks matters."""
        unsafe = operation in self.unsafe
        context = {"system": self.name, "operation": operation, "ref": ref}
        if isinstance(exc, requests.ConnectTimeout) or (isinstance(exc, requests.ConnectionError) and _never_sent(exc)):
            return TransientError(f"could not connect: {exc.__class__.__name__}", **context)
        if isinstance(exc, MISCONFIGURED):
            return PermanentError(f"endpoint {self.endpoint!r} is unusable: {exc.__class__.__name__}", **context)
        if isinstance(exc, requests.RequestException):
            # Read timeout, reset, or an answer cut off mid-body: the request did arrive.
            cls = AmbiguousError if unsafe else TransientError
            why = str(exc) if isinstance(exc, _IncompleteAnswer) else exc.__class__.__name__
            return cls(f"no complete answer after sending ({why})", **context)
        if isinstance(exc, Fault):
            return _fault_error(exc, unsafe, context)
        if isinstance(exc, TransportError):
            return _transport_error(exc, unsafe, context)
        if isinstance(exc, (DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden)):
            return MalformedResponse(f"answer refused: it declares a DTD or entities ({exc.__class__.__name__})", **context)
        if isinstance(exc, _UnreadableAnswer):
            return MalformedResponse(str(exc), **context)
        if isinstance(exc, (XMLSyntaxError, XMLParseError)):
            return MalformedResponse(f"unreadable answer: {str(exc)[:300]}", **context)
        if isinstance(exc, ZeepValidationError):
            return PermanentError(f"request does not fit the WSDL: {exc}", **context)
        # Any other zeep error is an answer zeep could not map onto the WSDL.
        return MalformedResponse(f"unexpected answer: {exc.__class__.__name__}: {str(exc)[:300]}", **context)


def _never_sent(exc: requests.ConnectionError) -> bool:
    """A refused or unresolvable connection: the request never left, so a retry is safe."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (NewConnectionError, ConnectionRefusedError)):
            return True
        pending.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return False


def _fault_error(fault: Fault, unsafe: bool, context: dict[str, Any]) -> ConnectorError:
    """Client faults are the request's fault (permanent); Server faults the service's (retry)."""
    code = printable(str(fault.code or "")).rpartition(":")[2].rpartition("}")[2][:40]
    detail = _fault_detail(fault)
    reason = printable(str(fault.message))[:MESSAGE_CHARS] + (f" [{detail}]" if detail else "")
    if code.startswith(("Client", "Sender")):
        return PermanentError(f"rejected (SOAP fault {code}): {reason}", **context)
    cls = AmbiguousError if unsafe else TransientError
    return cls(f"service failed (SOAP fault {code or 'without a code'}): {reason}", **context)


def _fault_detail(fault: Fault) -> str:
    detail = fault.detail
    if detail is None or not hasattr(detail, "iter"):
        return ""
    values = {}
    for el in detail.iter():
        if isinstance(el.tag, str) and el.text and el.text.strip():
            values[el.tag.rpartition("}")[2]] = printable(el.text.strip())[:100]
    return ", ".join(f"{k}={values[k]}" for k in ("ErrorCode", "Element") if k in values)


def _transport_error(exc: TransportError, unsafe: bool, context: dict[str, Any]) -> ConnectorError:
    """A non-SOAP answer: judged by its HTTP status."""
    status = exc.status_code or 0
    if status in (401, 403):
        return PermanentError(f"authentication refused (HTTP {status}): check the connection's login", **context)
    if status in (200, 201, 202):
        return MalformedResponse(f"HTTP {status} without a readable SOAP answer: {str(exc)[:300]}", **context)
    if status in (408, 425, 429) or status >= 500:
        cls = AmbiguousError if (unsafe and status >= 500) else TransientError
        return cls(f"HTTP {status} without a SOAP answer", **context)
    return PermanentError(f"HTTP {status} without a SOAP answer", **context)


def _only_binding(client: zeep.Client) -> str:
    """The WSDL's one SOAP 1.1 binding (a mapping names it when there are several)."""
    bindings = [str(qname) for qname, binding in client.wsdl.bindings.items() if binding.__class__.__name__ == "Soap11Binding"]
    if len(bindings) != 1:
        raise ValueError(f"the WSDL has {len(bindings)} SOAP 1.1 bindings ({', '.join(bindings)}): name one in the mapping")
    return bindings[0]
