"""Alerts for IOC staff: a report past its deadline, a back end that keeps failing, a failed
lifecycle task. Sent to the deployment's webhook (an Airflow HTTP connection) when it has
one, else written to the task log at ERROR. No personal data in any alert.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, Literal

from airflow.sdk import BaseHook, BaseNotifier
from pydantic import BaseModel

from paht_bridge.connectors.hooks import base_url
from paht_bridge.connectors.http import HttpTransport
from paht_bridge.config.deployment import Deployment, deployment

log = logging.getLogger("paht_bridge.alerts")


class Alert(BaseModel):
    kind: Literal["overdue", "failing_backend", "failed_task"]
    deployment: str
    message: str
    report: str | None = None  # source id
    agency: str | None = None
    target: str | None = None
    deadline: datetime | None = None


def send_alerts(alerts: list[Alert], mapping: Deployment) -> str:
    """Deliver alerts; returns where they went ("webhook" or "log")."""
    if not alerts:
        return "none"
    conn_id = mapping.alerts.webhook_connection_id
    if conn_id is None:
        for alert in alerts:
            log.error("PAHT alert kind=%s deployment=%s report=%s agency=%s target=%s: %s",
                      alert.kind, alert.deployment, alert.report, alert.agency, alert.target, alert.message)
        return "log"
    conn = BaseHook.get_connection(conn_id)
    transport = HttpTransport(f"alerts:{conn_id}", base_url(conn), timeout=(5.0, 15.0),
                              headers={"Authorization": f"Bearer {conn.password}"} if conn.password else None)
    try:
        body = json.dumps([a.model_dump(mode="json") for a in alerts], ensure_ascii=False).encode()
        transport.request("POST", conn.extra_dejson.get("path", "/"), operation="post_alerts", data=body,
                          headers={"Content-Type": "application/json"}, ok=(200, 201, 202, 204))
    finally:
        transport.close()
    return "webhook"


class PahtAlertNotifier(BaseNotifier):
    """An Airflow notifier: ``on_failure_callback=PahtAlertNotifier()`` alerts every deployment
    whose mapping asks for failed-task alerts."""

    template_fields = ()

    def __init__(self, deployments: list[str] | None = None) -> None:
        super().__init__()
        self.deployments = deployments

    def notify(self, context: dict[str, Any]) -> None:
        from paht_bridge.config.deployment import deployment_names

        ti = context.get("ti") or context.get("task_instance")
        what = f"{getattr(ti, 'dag_id', '?')}.{getattr(ti, 'task_id', '?')} (run {context.get('run_id')})"
        for name in self.deployments or deployment_names():
            mapping = deployment(name)
            if mapping.alerts.failed_task:
                send_alerts([Alert(kind="failed_task", deployment=name, message=f"Tác vụ thất bại / task failed: {what}")], mapping)
