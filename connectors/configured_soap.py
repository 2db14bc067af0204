"""Any SOAP document system, from its WSDL and a ``soap:`` section in the deployment mapping.

zeep builds each request from the WSDL (so a request that does not fit the vendor's
schema fails here with the element named, before it is sent) and the shared
``SoapCaller`` types every failure; the answer is read by the mapping's paths of element
local names under the response element, so the vendor's namespaces and zeep's
unwrapping of one-child answers do not matter. A new SOAP back end is a WSDL file and
a mapping: see ``mappings/quang_ninh.yaml``; a known kind of one is a preset
(``mappings/presets/edxml_soap.yaml``). Attachments travel inline (base64 in the
envelope, so in memory): their total is capped by ``max_inline_bytes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lxml import etree

from paht_bridge.connectors.answers import Answer, XmlAnswer
from paht_bridge.connectors.configured import ConfiguredDocumentSystem
from paht_bridge.connectors.errors import MalformedResponse, PermanentError
from paht_bridge.connectors.limits import DEFAULT_LIMITS, ConnectorLimits
from paht_bridge.connectors.outbound import xml_safe
from paht_bridge.connectors.soap import SoapCaller
from paht_bridge.connectors.xml import XmlRefused, parse_xml
from paht_bridge.canonical import DocumentReceipt, DocumentRecord, LocalAttachment
from paht_bridge.config.wire import Operation, SoapWire

SOAP_BODY = ("{http://schemas.xmlsoap.org/soap/envelope/}Body", "{http://www.w3.org/2003/05/soap-envelope}Body")


def wsdl_path(wire: SoapWire, override: str | Path | None = None) -> Path:
    """The WSDL file: the connection's ``extra.wsdl`` if set, else the mapping's (made
    absolute from the folder of the YAML file naming it when the mapping was loaded)."""
    return Path(override or wire.wsdl).expanduser()


class ConfiguredSoapClient(ConfiguredDocumentSystem):
    """A ``DocumentSystem`` for the SOAP service a ``SoapWire`` mapping describes.

    An Airflow hook builds it from a Connection: host → ``endpoint`` (plus the mapping's
    ``path``), login/password → HTTP Basic, extra ``timeout``, ``wsdl`` and ``limits``
    (answers up to ``max_xml_bytes`` and ``max_xml_depth``; attachments up to the smaller of
    ``max_attachment_bytes`` and the mapping's ``max_inline_bytes``).
    """

    inline_attachments = True

    def __init__(
        self,
        name: str,
        endpoint: str,
        wire: SoapWire,
        *,
        wsdl: str | Path | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        limits: ConnectorLimits = DEFAULT_LIMITS,
    ) -> None:
        self.name = name
        self.wire = wire
        self.limits = limits
        self.max_inline_bytes = min(limits.max_attachment_bytes, wire.max_inline_bytes)
        # Only the create may have created something when its answer is lost; a rating is
        # idempotent by its id, so a lost answer to it is merely transient.
        self._soap = SoapCaller(
            name, endpoint, wsdl_path(wire, wsdl), binding=wire.binding, unsafe=frozenset({wire.operations.create.name}),
            username=username, password=password, timeout=timeout, limits=limits,
        )

    def close(self) -> None:
        self._soap.close()

    def create_document(self, record: DocumentRecord, attachments: Sequence[LocalAttachment]) -> DocumentReceipt:
        total = sum(a.size for a in attachments)
        if total > self.max_inline_bytes:
            raise PermanentError(
                f"attachments total {total} bytes, over this service's {self.max_inline_bytes}-byte limit "
                "(it takes attachments inline, not streamed)",
                system=self.name, operation=self.wire.operations.create.name, ref=record.external_ref,
            )
        return super().create_document(record, attachments)

    def exchange(self, op: Operation, context: dict[str, Any], ref: str | None,
                 attachments: Sequence[LocalAttachment] = ()) -> Answer:
        request = xml_safe(self.request_for(op, context, ref))
        self._soap.call(op.name, ref, **request)
        return self._answer(op.name, ref)

    def _answer(self, operation: str, ref: str | None) -> XmlAnswer:
        """The response element of the last answer (the Body's first child)."""
        try:
            envelope = parse_xml(self._soap.last_answer, max_bytes=self.limits.max_xml_bytes, max_depth=self.limits.max_xml_depth)
        except XmlRefused as exc:
            raise MalformedResponse(f"unreadable answer: {exc}", system=self.name, operation=operation, ref=ref) from exc
        body = next((child for child in envelope if child.tag in SOAP_BODY), None)
        response = next((child for child in body if isinstance(child.tag, str)), None) if body is not None else None
        if response is None:
            raise MalformedResponse("answer has no response element in its Body", system=self.name, operation=operation, ref=ref)
        return XmlAnswer(response)


def binding_names(wsdl: Path) -> list[str]:
    """The SOAP bindings a WSDL declares (``paht validate`` names them when a mapping's is wrong)."""
    root = etree.parse(str(wsdl)).getroot()
    target = root.get("targetNamespace", "")
    return [f"{{{target}}}{b.get('name')}" for b in root.iter("{http://schemas.xmlsoap.org/wsdl/}binding")]
