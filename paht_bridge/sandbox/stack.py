"""The whole set of stand-ins the demo and the tests run against, on loopback.

Two citizen apps (QuangTri IOC, Điện Biên Smart) and an Open311 GeoReport v2 server
(Quảng Ninh); the edXML-style SOAP document system for Quảng Trị, the TDOffice-style REST
one for Điện Biên and the iOffice-style SOAP one for Quảng Ninh (a different WSDL, spoken
through the mapping alone), each on its own port, plus the Airflow Connections (as
``AIRFLOW_CONN_*`` variables) that point the bridge at them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import requests

from paht_bridge.sandbox.chaos import Chaos
from paht_bridge.sandbox.citizen_app import CitizenAppState, create_citizen_app, load_seed_reports
from paht_bridge.sandbox.edxml_docsys import EdxmlDocsysState, create_edxml_app
from paht_bridge.sandbox.ioffice_docsys import IofficeDocsysState, create_ioffice_app
from paht_bridge.sandbox.open311 import Open311State, create_open311_app, load_open311_seeds
from paht_bridge.sandbox.rest_docsys import RestDocsysState, create_rest_docsys_app
from paht_bridge.sandbox.server import LoopbackServer

CITIZEN_KEY = "sandbox-key"
SOAP_USER, SOAP_PASSWORD = "sandbox", "sandbox-secret"
REST_TOKEN = "sandbox-token"

#: connection id → (stand-in name, connection type: the one the hook for it declares); the ids
#: are the ones the deployment mappings name.
CONNECTIONS = {
    "paht_citizen_quangtri": ("quangtri_ioc", "paht_citizen_app"),
    "paht_citizen_dienbien": ("dienbien_smart", "paht_citizen_app"),
    "paht_qoffice_quangtri": ("qoffice_quangtri", "paht_soap"),
    "paht_tdoffice_dienbien": ("tdoffice_dienbien", "paht_rest"),
    "paht_open311_quangninh": ("quangninh_open311", "paht_open311"),
    "paht_ioffice_quangninh": ("ioffice_quangninh", "paht_soap"),
}
CITIZEN_TYPES = ("paht_citizen_app", "paht_open311")


@dataclass
class SandboxUrls:
    """Where each stand-in listens; enough to build connections and drive the control endpoints."""

    urls: dict[str, str]  # stand-in name → base URL

    def connection_env(self, timeout: float = 30, citizen_timeout: float | None = None) -> dict[str, str]:
        """``timeout`` for the document systems; ``citizen_timeout`` (default: the same) for the
        citizen apps, so a test can make a stall after commit time out fast without making a
        page of reports on a loaded machine time out too."""
        env = {}
        for conn_id, (name, conn_type) in CONNECTIONS.items():
            conn: dict[str, object] = {"conn_type": conn_type, "host": self.urls[name]}
            if conn_type in CITIZEN_TYPES:
                conn.update(password=CITIZEN_KEY, extra={"timeout": citizen_timeout or timeout})
            elif conn_type == "paht_soap":  # the service path comes from the mapping (or its preset)
                conn.update(login=SOAP_USER, password=SOAP_PASSWORD, extra={"timeout": timeout})
            else:
                conn.update(password=REST_TOKEN, extra={"timeout": timeout})
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
        return env

    @property
    def citizen_apps(self) -> list[str]:
        return [self.urls[n] for n, t in CONNECTIONS.values() if t in CITIZEN_TYPES]

    @property
    def document_systems(self) -> list[str]:
        return [self.urls[n] for n, t in CONNECTIONS.values() if t not in CITIZEN_TYPES]

    def tick_desks(self) -> int:
        """One step of every agency desk; returns how many documents moved."""
        return sum(requests.post(f"{url}/_sandbox/desk/tick", timeout=30).json()["moved"] for url in self.document_systems)

    def citizens_rate(self) -> int:
        return sum(requests.post(f"{url}/_sandbox/citizens/rate", timeout=30).json()["rated"] for url in self.citizen_apps)

    def to_json(self) -> str:
        return json.dumps({"urls": self.urls})

    @classmethod
    def from_json(cls, text: str) -> "SandboxUrls":
        return cls(urls=json.loads(text)["urls"])


@dataclass
class SandboxStack:
    """All stand-ins in this process, each in its own server thread."""

    refuse_one_in: int = 7
    servers: dict[str, LoopbackServer] = field(default_factory=dict)
    citizen_states: dict[str, CitizenAppState] = field(default_factory=dict)
    soap_state: EdxmlDocsysState | None = None
    rest_state: RestDocsysState | None = None
    ioffice_state: IofficeDocsysState | None = None
    open311_state: Open311State | None = None
    #: stand-in name → its chaos layer (faults at given rates; calm by default)
    chaos: dict[str, Chaos] = field(default_factory=dict)
    seed_reports: bool = True

    def start(self, ports: dict[str, int] | None = None) -> SandboxUrls:
        ports = ports or {}
        for source in ("quangtri_ioc", "dienbien_smart"):
            reports = load_seed_reports(source) if self.seed_reports else []
            state = CitizenAppState(name=source, reports=reports, api_key=CITIZEN_KEY)
            self.citizen_states[source] = state
            self._serve(source, create_citizen_app(state), ports)
        self.soap_state = EdxmlDocsysState(refuse_one_in=self.refuse_one_in, username=SOAP_USER, password=SOAP_PASSWORD)
        self._serve("qoffice_quangtri", create_edxml_app(self.soap_state), ports)
        self.rest_state = RestDocsysState(refuse_one_in=self.refuse_one_in, token=REST_TOKEN)
        self._serve("tdoffice_dienbien", create_rest_docsys_app(self.rest_state), ports)
        requests_ = load_open311_seeds("quangninh_open311") if self.seed_reports else []
        self.open311_state = Open311State(name="quangninh_open311", requests=requests_, api_key=CITIZEN_KEY)
        self._serve("quangninh_open311", create_open311_app(self.open311_state), ports)
        self.ioffice_state = IofficeDocsysState(refuse_one_in=self.refuse_one_in, username=SOAP_USER, password=SOAP_PASSWORD)
        self._serve("ioffice_quangninh", create_ioffice_app(self.ioffice_state), ports)
        return self.urls

    def _serve(self, name: str, app: object, ports: dict[str, int]) -> None:
        self.chaos[name] = Chaos(app)
        self.servers[name] = LoopbackServer(self.chaos[name], port=ports.get(name, 0), name=name).start()

    def take_down(self, name: str) -> None:
        """A real outage: the stand-in stops listening (connections are refused); its state is kept."""
        self.servers[name].stop()

    def bring_back(self, name: str) -> None:
        """The stand-in listens again on the same port, with the state it had."""
        port = self.servers[name].port
        self.servers[name] = LoopbackServer(self.chaos[name], port=port, name=name).start()

    @property
    def urls(self) -> SandboxUrls:
        return SandboxUrls(urls={name: server.url for name, server in self.servers.items()})

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()
