"""The obvious alternative the bridge is measured against (P2): one mapped task per report.

``list_reports`` reads every citizen app's reports (one listing); then one mapped task per
report parses it, routes it and creates its document. No ledger, no batching: what a
first attempt at "Airflow moves each report" looks like. The project's rule is never to do this;
this DAG exists only so ``bench.run`` can show why. Not in ``dags/``, never scheduled.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

DEPLOYMENTS = ("quang_tri", "dien_bien")


@task
def list_reports() -> list[dict]:
    """Every report in both apps, or the first ``limit`` (DAG param, 0: all) of the synthetic backlog."""
    from airflow.sdk import get_current_context

    from paht_bridge.connectors.hooks import AirflowConnectors
    from paht_bridge.config.deployment import deployment

    limit = int(get_current_context()["params"].get("limit") or 0)
    items = []
    for name in DEPLOYMENTS:
        mapping = deployment(name)
        spec = mapping.sources[0]
        client = AirflowConnectors(mapping).source(spec.name)
        for raw_items, _, _ in client._feed("/api/v1/reports", None, spec.page_size, "reports_since"):  # noqa: SLF001 - the raw items go to XCom
            items += [{"deployment": name, "raw": raw} for raw in raw_items]
    if limit:  # a sample of the backlog (its ids end in -S<n>), spread over both apps like the backlog
        items = sorted((i for i in items if "-S" in str(i["raw"].get("id"))), key=lambda i: str(i["raw"]["id"])[-5:])[:limit]
    return items


@task(map_index_template="{{ task.op_kwargs['item']['raw']['id'] }}")
def deliver_report(item: dict) -> str:
    from paht_bridge.connectors.hooks import AirflowConnectors
    from paht_bridge.normalise.admin_units import resolve_units
    from paht_bridge.config.deployment import deployment
    from paht_bridge.normalise.transforms import build_document, routes

    mapping = deployment(item["deployment"])
    connectors = AirflowConnectors(mapping)
    reports, bad = connectors.source(mapping.sources[0].name).parse_reports([item["raw"]])
    if not reports:
        return f"quarantined: {bad[0].reason if bad else '?'}"
    report = reports[0]
    routing = routes(report, resolve_units(report.location.unit), mapping)[0]
    record = build_document(report, routing, mapping)
    receipt = connectors.target(routing.target).create_document(record.model_copy(update={"external_ref": "BASE-" + record.external_ref}), [])
    return receipt.document_id


with DAG("paht_baseline_per_report", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Ho_Chi_Minh"),
         catchup=False, max_active_runs=1, tags=["bench"], params={"limit": 0}) as paht_baseline_per_report:
    deliver_report.expand(item=list_reports())
