"""When PAHT bridge runs: one DAG per lifecycle stage, each task a batch per deployment.

Thin on purpose, so the scheduler parses it fast: the steps live in ``paht_bridge.steps``; this file
only sets schedules, retries and Asset links, and does no I/O at import time beyond
listing the deployment mapping files. Tasks map over deployments, never over reports.

``paht_ingest`` starts when a citizen source has something new: the triggerer runs one
``NewReportsTrigger`` per deployment watching ``NEW_REPORTS`` (``paht_bridge.plugins.new_reports_trigger``);
its 5-minute cron stays as a safety net (a watcher that could not fire, a triggerer that is down).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, AssetWatcher, get_current_context, task
from airflow.timetables.trigger import CronTriggerTimetable

from paht_bridge.alerts import PahtAlertNotifier
from paht_bridge.config.deployment import deployment_names
from paht_bridge.plugins.new_reports_trigger import NewReportsTrigger

TZ = "Asia/Ho_Chi_Minh"
DEPLOYMENTS = deployment_names()
REPORTS_ROUTED = Asset("paht://ledger/reports-routed")
#: Updated by the triggerer whenever a deployment's citizen sources hold reports past the ledger's cursors.
NEW_REPORTS = Asset("paht://citizen-apps/new-reports",
                    watchers=[AssetWatcher(name=f"new_reports_{d}", trigger=NewReportsTrigger(deployment=d)) for d in DEPLOYMENTS])
DEFAULT_ARGS = {"retries": 2, "retry_delay": timedelta(minutes=1), "retry_exponential_backoff": 2.0,
                "execution_timeout": timedelta(minutes=30), "owner": "paht",
                "on_failure_callback": PahtAlertNotifier()}


def _step_task(step: str, outlets: list[Asset] | None = None):  # noqa: ANN202 - returns an Airflow task factory
    @task(task_id=step, outlets=outlets or [], map_index_template="{{ task.op_kwargs['deployment_name'] if task.op_kwargs else '' }}")
    def run(deployment_name: str) -> dict:
        from paht_bridge.tasks import run_step

        context = get_current_context()
        return run_step(step, deployment_name, context["run_id"], context["dag"].dag_id)

    return run


def _lifecycle_dag(dag_id: str, description: str, schedule: object, steps: list[tuple[str, list[Asset] | None]]) -> DAG:
    with DAG(dag_id, description=description, schedule=schedule, start_date=pendulum.datetime(2026, 1, 1, tz=TZ),
             catchup=False, max_active_runs=1, default_args=DEFAULT_ARGS, tags=["paht"], doc_md=__doc__) as dag:
        previous = None
        for step, outlets in steps:
            current = _step_task(step, outlets).expand(deployment_name=DEPLOYMENTS)
            if previous is not None:
                previous >> current
            previous = current
    return dag


paht_ingest = _lifecycle_dag("paht_ingest", "Pull new reports from citizen apps, normalise and route them",
                             AssetOrTimeSchedule(timetable=CronTriggerTimetable("*/5 * * * *", timezone=TZ), assets=[NEW_REPORTS]),
                             [("ingest", [REPORTS_ROUTED])])
paht_deliver = _lifecycle_dag("paht_deliver", "Create routed reports as documents in agencies' systems, exactly once",
                              AssetOrTimeSchedule(timetable=CronTriggerTimetable("*/5 * * * *", timezone=TZ), assets=[REPORTS_ROUTED]),
                              [("deliver", None)])
paht_poll_publish = _lifecycle_dag("paht_poll_publish", "Poll document systems for status changes; publish answers to citizens",
                                   CronTriggerTimetable("*/10 * * * *", timezone=TZ), [("poll", None), ("publish", None), ("alerts", None)])
paht_reconcile = _lifecycle_dag("paht_reconcile", "Compare the ledger with every source and target; report drift",
                                CronTriggerTimetable("0 2 * * *", timezone=TZ), [("reconcile", None)])
paht_ratings = _lifecycle_dag("paht_ratings", "Take citizens' ratings and pass them on to the agencies",
                              CronTriggerTimetable("*/15 * * * *", timezone=TZ), [("ratings", None)])
