"""The ledger's tables: the single source of truth for where every report is.

One row per report (keyed by source and source id), one row per delivery of a report to
an agency (a re-route is a second delivery), an append-only event log that is each
report's trace, the cursors of every feed, ratings, and the quarantine of bad input.
Schema changes go through Alembic (``migrations/``), never ``create_all``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship



class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware on both engines: SQLite keeps no zone, so store UTC and read it back aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class ReportRow(Base):
    __tablename__ = "reports"
    __table_args__ = (
        UniqueConstraint("source", "source_id", name="uq_reports_source_id"),
        # Candidates for a duplicate: one deployment's reports of one category in a time window.
        Index("ix_reports_duplicate_window", "deployment", "category", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(64))
    source_id: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    # Every unit code is stored with its scheme: code 44 was Quảng Bình and is now Quảng Trị.
    legacy_province_code: Mapped[str | None] = mapped_column(String(8))
    legacy_district_code: Mapped[str | None] = mapped_column(String(8))
    legacy_ward_code: Mapped[str | None] = mapped_column(String(8))
    province_code: Mapped[str | None] = mapped_column(String(8))  # 2025 scheme
    ward_code: Mapped[str | None] = mapped_column(String(8))  # 2025 scheme
    locality: Mapped[str | None] = mapped_column(String(128), index=True)  # 2025 ward name, for statistics
    # Personal data, encrypted (Fernet) with the ledger key; never stored in clear.
    reporter_name_enc: Mapped[str | None] = mapped_column(Text)
    reporter_phone_enc: Mapped[str | None] = mapped_column(Text)
    # The canonical report without the reporter, to rebuild documents without asking the source again.
    payload: Mapped[dict] = mapped_column(JSON)
    problem: Mapped[str | None] = mapped_column(Text)  # why it waits for IOC review, if it does
    # A duplicate (phản ánh trùng: the same problem reported again) has no delivery of its own:
    # it follows its primary's document, and its own publication is recorded here.
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("reports.id", name="fk_reports_duplicate_of"), index=True)
    duplicate_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # on a primary: how many follow it
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # a duplicate's answer, at its own source

    deliveries: Mapped[list["DeliveryRow"]] = relationship(back_populates="report", order_by="DeliveryRow.attempt")


class DeliveryRow(Base):
    """One report sent to one agency in one target. States: pending → sending → delivered,
    or sending → unknown (look up before retrying), or → dead (with the reason)."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_claim", "state", "next_try_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"), index=True)
    deployment: Mapped[str] = mapped_column(String(64), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    #: 0 for the lead agency, 1.. for co-handling ones; a re-route stays in its lane.
    lane: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    external_ref: Mapped[str] = mapped_column(String(200), unique=True)
    target: Mapped[str] = mapped_column(String(64), index=True)
    agency_code: Mapped[str] = mapped_column(String(35), index=True)
    agency_name: Mapped[str] = mapped_column(String(255))
    target_category: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16), default="pending")
    tries: Mapped[int] = mapped_column(Integer, default=0)
    next_try_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    document_id: Mapped[str | None] = mapped_column(String(128), index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    doc_status: Mapped[str | None] = mapped_column(String(32))
    doc_raw_code: Mapped[str | None] = mapped_column(String(32))
    doc_status_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    answer: Mapped[str | None] = mapped_column(Text)
    answered_by: Mapped[str | None] = mapped_column(String(255))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rerouted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    report: Mapped[ReportRow] = relationship(back_populates="deliveries")


class EventRow(Base):
    """Append-only: every transition of a report, with when, which run and why."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id"), index=True)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str | None] = mapped_column(String(32))
    run_id: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class CursorRow(Base):
    """Where a feed resumes. Written in the same transaction as the data it covers."""

    __tablename__ = "cursors"

    stream: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RatingRow(Base):
    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("source", "rating_id", name="uq_ratings_source_rating"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    rating_id: Mapped[str] = mapped_column(String(128))
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"), index=True)
    level: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    pushed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    push_error: Mapped[str | None] = mapped_column(Text)


class QuarantineRow(Base):
    """Input that could not be taken in, with a specific reason; replayable after a fix."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(64))
    source_id: Mapped[str | None] = mapped_column(String(128), index=True)
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text)  # personal data masked, for display
    raw_enc: Mapped[str | None] = mapped_column(Text)  # the payload as received, encrypted, for replay after a fix
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    run_id: Mapped[str | None] = mapped_column(String(255))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RunRow(Base):
    """One step of one DAG run for one deployment: what IOC staff see as a sync run."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(255), index=True)
    dag_id: Mapped[str | None] = mapped_column(String(128), index=True)
    step: Mapped[str] = mapped_column(String(32))
    deployment: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16))  # running, success, partial (some items failed), failed
    counts: Mapped[dict] = mapped_column(JSON, default=dict)
    errors: Mapped[list] = mapped_column(JSON, default=list)
    #: Where the task ran, so a later run can tell a task that is gone from one still working.
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)


class CircuitRow(Base):
    """A target's circuit breaker: after repeated failures no calls go out until ``open_until``."""

    __tablename__ = "circuits"

    target: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # consecutive
    open_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
