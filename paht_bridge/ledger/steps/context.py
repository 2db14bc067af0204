"""What every step is given: the deployment, the ledger, the connectors and the run.

Steps never read credentials: ``connectors`` hands out ready clients (built by Airflow
hooks in a DAG, or directly in tests).
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from paht_bridge.connectors.base import CitizenSource, DocumentSystem
from paht_bridge.ledger.db import decrypt
from paht_bridge.ledger.models import ReportRow
from paht_bridge.mappings.canonical import Report, Reporter
from paht_bridge.mappings.config import Deployment

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


class StepResult(BaseModel):
    """Counts only: this goes to XCom and the UI, so it never carries personal data."""

    deployment: str
    step: str
    counts: dict[str, int] = {}
    errors: list[str] = []

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


def report_from_row(row: ReportRow) -> Report:
    """Rebuild the canonical report from the ledger (reporter decrypted, kept in SecretStr)."""
    reporter = Reporter(name=decrypt(row.reporter_name_enc), phone=decrypt(row.reporter_phone_enc))
    return Report.model_validate({**row.payload, "reporter": reporter})
