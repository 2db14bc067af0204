"""The steps that move reports through their life; DAGs decide only when they run."""

from paht_bridge.steps.alerts import alerts
from paht_bridge.steps.context import StepContext, StepResult
from paht_bridge.steps.deliver import deliver
from paht_bridge.steps.ingest import ingest
from paht_bridge.steps.poll import poll
from paht_bridge.steps.publish import publish
from paht_bridge.steps.ratings import ratings
from paht_bridge.steps.reconcile import reconcile

STEPS = {"ingest": ingest, "deliver": deliver, "poll": poll, "publish": publish, "ratings": ratings, "reconcile": reconcile,
         "alerts": alerts}

__all__ = ["STEPS", "alerts", "StepContext", "StepResult", "deliver", "ingest", "poll", "publish", "ratings", "reconcile"]
