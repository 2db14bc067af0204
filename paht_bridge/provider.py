"""Airflow provider metadata: declares the bridge's connection types so the Airflow UI
shows the right form fields, and its trigger (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "paht-bridge",
        "name": "PAHT bridge",
        "description": "Citizen field reports (phản ánh hiện trường) to agency document systems.",
        "versions": ["0.1.0"],
        "connection-types": [
            {
                "connection-type": "paht_citizen_app",
                "hook-class-name": "paht_bridge.connectors.hooks.CitizenAppHook",
                "ui-field-behaviour": {"hidden-fields": ["login"], "relabeling": {"password": "API key", "host": "Base URL"}},
            },
            {
                "connection-type": "paht_open311",
                "hook-class-name": "paht_bridge.connectors.hooks.Open311Hook",
                "ui-field-behaviour": {"hidden-fields": ["login"], "relabeling": {"password": "API key", "host": "Base URL"}},
            },
            {
                "connection-type": "paht_soap",
                "hook-class-name": "paht_bridge.connectors.hooks.ConfiguredSoapHook",
                "ui-field-behaviour": {"relabeling": {"host": "Base URL"},
                                       "placeholders": {"extra": '{"timeout": 30, "path": "/service (default: the mapping soap.path)", "wsdl": "/path/to/local.wsdl"}'}},
            },
            {
                "connection-type": "paht_rest",
                "hook-class-name": "paht_bridge.connectors.hooks.ConfiguredRestHook",
                "ui-field-behaviour": {"relabeling": {"password": "Token or password", "host": "Base URL"}},
            },
        ],
        # The triggerer runs it for paht_ingest's AssetWatchers (dags/paht_lifecycle.py).
        "triggers": [{"integration-name": "PAHT bridge", "python-modules": ["paht_bridge.plugins.new_reports_trigger"]}],
    }
