"""Airflow hooks: the only place that reads credentials, from Airflow Connections.

Each hook wraps one connection and hands out a ready, reused client. Constructors do no
I/O; the connection is resolved on first use. Fields read from a connection:
``host`` (a URL, or a host name with ``schema`` as the URL scheme and ``port``), ``login``
and ``password`` (the credential), and ``extra`` (JSON): ``timeout`` in seconds, ``limits``
(a ``ConnectorLimits`` object: body, attachment and XML sizes, media types, text lengths),
and for SOAP ``wsdl`` (a local path) and ``path`` (the service path, default the mapping's).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from paht_bridge.connectors.base import CitizenSource, DocumentSystem
from paht_bridge.connectors.limits import ConnectorLimits
from paht_bridge.config.deployment import Deployment, Source, Target


def base_url(conn: Any) -> str:
    host = (conn.host or "").rstrip("/")
    if host.startswith(("http://", "https://")):
        return host if not conn.port else f"{host}:{conn.port}"
    scheme = conn.schema or "http"
    return f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")


class _ClientHook(BaseHook):
    conn_name_attr = "conn_id"

    def __init__(self, conn_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id

    @cached_property
    def connection(self) -> Any:
        return self.get_connection(self.conn_id)

    def timeout(self, default: float = 30.0) -> float:
        return float(self.connection.extra_dejson.get("timeout", default))

    def limits(self) -> ConnectorLimits:
        return ConnectorLimits.from_extra(self.connection.extra_dejson, conn_id=self.conn_id)


class CitizenAppHook(_ClientHook):
    """A citizen app's open API. Reads host/port/schema, ``password`` as the API key, extra.timeout,
    extra.limits; the mapping's ``legacy_text`` says whether legacy-encoded text is converted."""

    conn_type = "paht_citizen_app"
    hook_name = "PAHT citizen app"
    default_conn_name = "paht_citizen_app_default"

    def get_client(self, name: str, spec: Source | None = None) -> CitizenSource:
        from paht_bridge.connectors.citizen_app import CitizenAppClient

        conn = self.connection
        return CitizenAppClient(name, base_url(conn), api_key=conn.password, timeout=(5.0, self.timeout()), limits=self.limits(),
                                legacy_text=spec.legacy_text if spec else "reject")


class Open311Hook(_ClientHook):
    """An Open311 GeoReport v2 server. Reads host/port/schema, ``password`` as the api_key,
    extra.timeout, extra.limits; the mapping's ``open311`` section gives the format,
    jurisdiction and date windows."""

    conn_type = "paht_open311"
    hook_name = "PAHT Open311 GeoReport v2 server"
    default_conn_name = "paht_open311_default"

    def get_client(self, name: str, spec: Source | None = None) -> CitizenSource:
        from paht_bridge.connectors.open311 import Open311Client
        from paht_bridge.config.deployment import Open311Options

        conn, options = self.connection, (spec.open311 if spec else None) or Open311Options()
        return Open311Client(name, base_url(conn), api_key=conn.password, jurisdiction_id=options.jurisdiction_id,
                             wire_format=options.wire_format, timeout=(5.0, self.timeout()), limits=self.limits(),
                             window_days=options.window_days, initial_start=options.initial_start)


class ConfiguredSoapHook(_ClientHook):
    """A SOAP document system described by a mapping's ``soap:`` section (its own, or its
    preset's). Reads host/port/schema, login/password (HTTP Basic), extra.timeout,
    extra.limits, extra.path (else the mapping's), extra.wsdl (a local file, else the mapping's)."""

    conn_type = "paht_soap"
    hook_name = "PAHT SOAP document system"
    default_conn_name = "paht_soap_default"

    def get_client(self, name: str, spec: Target) -> DocumentSystem:
        from paht_bridge.connectors.configured_soap import ConfiguredSoapClient

        conn, wire = self.connection, spec.soap
        extra = conn.extra_dejson
        endpoint = base_url(conn) + extra.get("path", wire.path)
        return ConfiguredSoapClient(name, endpoint, wire, wsdl=extra.get("wsdl"), username=conn.login, password=conn.password,
                                    timeout=self.timeout(), limits=self.limits())


class ConfiguredRestHook(_ClientHook):
    """A REST document system described by a mapping's ``rest:`` section (its own, or its
    preset's). Reads host/port/schema, login and ``password`` (the bearer token, or Basic),
    extra.timeout, extra.limits."""

    conn_type = "paht_rest"
    hook_name = "PAHT REST document system"
    default_conn_name = "paht_rest_default"

    def get_client(self, name: str, spec: Target) -> DocumentSystem:
        from paht_bridge.connectors.configured_rest import ConfiguredRestClient

        conn = self.connection
        return ConfiguredRestClient(name, base_url(conn), spec.rest, login=conn.login, password=conn.password,
                                    timeout=(5.0, self.timeout()), limits=self.limits())


SOURCE_HOOKS: dict[str, type[_ClientHook]] = {"citizen_app": CitizenAppHook, "open311": Open311Hook}
#: Every target is described by its mapping: the hook needs the target's section too.
TARGET_HOOKS: dict[str, type[_ClientHook]] = {"soap": ConfiguredSoapHook, "rest": ConfiguredRestHook}


class AirflowConnectors:
    """Clients for one deployment's systems, built from Airflow Connections, one per system."""

    def __init__(self, mapping: Deployment) -> None:
        self.mapping = mapping
        self._clients: dict[str, Any] = {}

    def source(self, name: str) -> CitizenSource:
        if name not in self._clients:
            spec = self.mapping.source(name)
            self._clients[name] = SOURCE_HOOKS[spec.kind](spec.connection_id).get_client(name, spec)
        return self._clients[name]

    def target(self, name: str) -> DocumentSystem:
        if name not in self._clients:
            spec = self.mapping.target(name)
            self._clients[name] = TARGET_HOOKS[spec.kind](spec.connection_id).get_client(name, spec)
        return self._clients[name]
