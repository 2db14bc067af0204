"""What every step is given: the deployment, the ledger, the connectors and the run.

Steps never read credentials: ``connectors`` hands out ready clients (built by Airflow
hooks in a DAG, or directly in tests).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NoReturn, Protocol

from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from paht_bridge.connectors.base import CitizenSource, DocumentSystem
from paht_bridge.ledger.db import decrypt
from paht_bridge.ledger.models import ReportRow
from paht_bridge.canonical import Report, Reporter, vietnam_now
from paht_bridge.config.deployment import Deployment, Privacy
from paht_bridge.privacy import hide_from_airflow_logs

log = logging.getLogger("paht_bridge.steps")


class Connectors(Protocol):
    def source(self, name: str) -> CitizenSource: ...

    def target(self, name: str) -> DocumentSystem: ...


@dataclass
class StepContext:
    mapping: Deployment
    sessions: sessionmaker[Session]
    connectors: Connectors
    run_id: str = "manual"
    batch_size: int = 100
    worker: str = field(default_factory=lambda: f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
    #: How long a claim on a delivery holds; a worker that dies loses it after this.
    lease: timedelta = field(default_factory=lambda: timedelta(seconds=float(os.environ.get("PAHT_LEASE_SECONDS", 600))))
    #: The step's notion of now (tests compress an hour-long outage by moving it).
    clock: Callable[[], datetime] = vietnam_now


class StepResult(BaseModel):
    """Counts only: this goes to XCom and the UI, so it never carries personal data."""

    deployment: str
    step: str
    counts: dict[str, int] = {}
    errors: list[str] = []

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


def operator_context(deployment_name: str, run_id: str, ledger: str | None = None) -> StepContext:
    """A step's context for an operator's action on one deployment (the CLI, the IOC page): its
    mapping, the ledger (``ledger``, else the configured one) and clients from Airflow Connections."""
    from paht_bridge.connectors.hooks import AirflowConnectors  # Airflow's hooks: only where an action needs them
    from paht_bridge.ledger.db import sessions
    from paht_bridge.config.deployment import deployment

    mapping = deployment(deployment_name)
    return StepContext(mapping=mapping, sessions=sessions(ledger), connectors=AirflowConnectors(mapping), run_id=run_id)


def reraise_after_others(failures: list[Exception], result: StepResult) -> NoReturn:
    """Once the others are done (sources, senders), re-raise the first failure's own error (so
    callers still decide by its type), carrying the step's partial result for the run record."""
    error = failures[0]
    error.partial_result = result  # type: ignore[attr-defined]
    raise error


def partial_result(error: BaseException) -> StepResult | None:
    """The counts a step had reached before ``error`` (see ``reraise_after_others``)."""
    return getattr(error, "partial_result", None)


def report_from_row(row: ReportRow, privacy: Privacy) -> Report:
    """Rebuild the canonical report from the ledger for an agency: only the reporter data the
    deployment's ``privacy`` lets reach it is decrypted (kept in SecretStr, taught to Airflow's
    masker). What stays encrypted cannot leak through a back end's echo or error message, and
    costs nothing: Airflow's masker recompiles all its patterns on every new one."""
    name = decrypt(row.reporter_name_enc) if privacy.send_reporter_name else None
    phone = decrypt(row.reporter_phone_enc) if privacy.send_reporter_phone else None
    reporter = Reporter(name=name, phone=phone)
    hide_from_airflow_logs(reporter.name, reporter.phone)
    return Report.model_validate({**row.payload, "reporter": reporter})
