"""The steps that move reports through their life; DAGs decide only when they run."""

from paht_bridge.ledger.steps.alerts import alerts
from paht_bridge.ledger.steps.context import StepContext, StepResult
from paht_bridge.ledger.steps.deliver import deliver
from paht_bridge.ledger.steps.ingest import ingest
from paht_bridge.ledger.steps.poll import poll
from paht_bridge.ledger.steps.publish import publish
from paht_bridge.ledger.steps.ratings import ratings
from paht_bridge.ledger.steps.reconcile import reconcile

STEPS = {"ingest": ingest, "deliver": deliver, "poll": poll, "publish": publish, "ratings": ratings, "reconcile": reconcile,
         "alerts": alerts}

__all__ = ["STEPS", "alerts", "StepContext", "StepResult", "deliver", "ingest", "poll", "publish", "ratings", "reconcile"]
