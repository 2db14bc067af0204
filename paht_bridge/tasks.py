"""The entry point DAG tasks call: one lifecycle step for one deployment, as a batch."""

from __future__ import annotations

import logging

from paht_bridge.connectors.hooks import AirflowConnectors
from paht_bridge.ledger.db import migrate, sessions
from paht_bridge.ledger.steps import STEPS, StepContext
from paht_bridge.mappings.config import deployment

log = logging.getLogger(__name__)


def run_step(step: str, deployment_name: str, run_id: str) -> dict:
    """Run ``step`` for one deployment; returns counts (safe for XCom: no personal data)."""
    mapping = deployment(deployment_name)
    migrate()
    ctx = StepContext(mapping=mapping, sessions=sessions(), connectors=AirflowConnectors(mapping), run_id=run_id)
    result = STEPS[step](ctx)
    log.info("step done step=%s deployment=%s counts=%s", step, deployment_name, result.counts)
    return result.model_dump()
