"""Clients for the two shipped document systems, built the way production builds them: from
the shipped deployment's target, its keys taken from its preset (``edxml_soap``, ``tdoffice_rest``)."""

from __future__ import annotations

from functools import cache
from typing import Any

from paht_bridge.canonical import DocumentRecord
from paht_bridge.connectors.configured import ConfiguredDocumentSystem

from paht_bridge.connectors.configured_rest import ConfiguredRestClient
from paht_bridge.connectors.configured_soap import ConfiguredSoapClient
from paht_bridge.connectors.http import DEFAULT_TIMEOUT
from paht_bridge.connectors.limits import DEFAULT_LIMITS, ConnectorLimits
from paht_bridge.config.deployment import Target, load_deployment
from paht_bridge.config.folders import shipped_mappings
from paht_bridge.config.wire import RestWire, SoapWire


@cache
def edxml_target() -> Target:
    """Quảng Trị's document system: ``preset: edxml_soap``."""
    return load_deployment(shipped_mappings() / "quang_tri.yaml").target("qoffice_quangtri")


@cache
def tdoffice_target() -> Target:
    """Điện Biên's document system: ``preset: tdoffice_rest``."""
    return load_deployment(shipped_mappings() / "dien_bien.yaml").target("tdoffice_dienbien")


def edxml_wire() -> SoapWire:
    wire = edxml_target().soap
    assert wire is not None
    return wire


def tdoffice_wire() -> RestWire:
    wire = tdoffice_target().rest
    assert wire is not None
    return wire


def edxml_client(endpoint: str, *, name: str = "qoffice_quangtri", username: str | None = "sandbox",
                 password: str | None = "sandbox-secret", timeout: float = 5.0, limits: ConnectorLimits = DEFAULT_LIMITS,
                 wire: SoapWire | None = None) -> ConfiguredSoapClient:
    """An edXML client for the service at ``endpoint`` (its whole URL, path included)."""
    return ConfiguredSoapClient(name, endpoint, wire or edxml_wire(), username=username, password=password, timeout=timeout, limits=limits)


def tdoffice_client(base_url: str, *, name: str = "tdoffice_dienbien", token: str | None = "sandbox-token",
                    timeout: tuple[float, float] = DEFAULT_TIMEOUT, limits: ConnectorLimits = DEFAULT_LIMITS,
                    wire: RestWire | None = None) -> ConfiguredRestClient:
    """A TDOffice client for the API at ``base_url``; ``token`` is the bearer token."""
    return ConfiguredRestClient(name, base_url, wire or tdoffice_wire(), password=token, timeout=timeout, limits=limits)


def create_request(client: ConfiguredDocumentSystem, record: DocumentRecord) -> dict[str, Any]:
    """What ``client.create_document(record, [])`` sends (the request body, before the wire
    format: zeep's dict for SOAP, the JSON document for REST), built without a server."""
    return client.request_for(client.wire.operations.create, client.create_context(record, []), record.external_ref)
