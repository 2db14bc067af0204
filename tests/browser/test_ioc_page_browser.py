"""The IOC page as IOC staff meet it: a real Chromium logs in to a real Airflow API server after a demo.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) at /usr/bin/chromium, driven
by the Python ``playwright`` package (no browser download). The API server runs on the
demo's own Airflow home and ledger; what the page shows is checked against the ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from paht_bridge.ledger.db import sessions
from paht_bridge.ledger.models import DeliveryRow, EventRow, ReportRow
from paht_bridge.ledger.figures import figures
from paht_bridge.canonical import VIETNAM_TZ
from tests.airflow_api import PASSWORD, USER, airflow_env, api_server_process
from tests.demo_run import DemoRun

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def api_server(demo_run: DemoRun) -> Iterator[str]:
    """``airflow api-server`` on the demo's Airflow home (its metadata DB is migrated) and ledger."""
    env = {**airflow_env(demo_run.home / "airflow"), "PAHT_HOME": str(demo_run.home)}
    try:
        with api_server_process(env, demo_run.home / "api-server.log") as base:
            yield base
    except RuntimeError as error:
        pytest.fail(str(error))


@pytest.fixture
def page(api_server: str, chromium: object) -> object:
    return chromium.new_page(viewport={"width": 1400, "height": 900}, locale="vi-VN")


def a_rerouted_report(url: str) -> tuple[str, list[EventRow], list[DeliveryRow]]:
    """A report with the longest story in the ledger: refused, re-routed, answered, rated."""
    with sessions(url)() as session:
        report = session.scalar(select(ReportRow).join(EventRow, EventRow.report_id == ReportRow.id)
                                .where(EventRow.kind == "rerouted", ReportRow.status == "rated")  # not an Open311 one: no ratings
                                .order_by(ReportRow.id).limit(1))
        events = session.scalars(select(EventRow).where(EventRow.report_id == report.id).order_by(EventRow.at, EventRow.id)).all()
        return report.source_id, list(events), list(report.deliveries)


def held_by(url: str, agency_code: str) -> list[int]:
    """In progress, overdue and dead-lettered among the reports whose newest delivery is with this agency."""
    with sessions(url)() as session:
        newest: dict[int, DeliveryRow] = {}
        for delivery in session.scalars(select(DeliveryRow).order_by(DeliveryRow.report_id, DeliveryRow.attempt)):
            newest[delivery.report_id] = delivery
    held = [d for d in newest.values() if d.agency_code == agency_code]
    now = datetime.now(VIETNAM_TZ)
    open_ = [d for d in held if d.doc_status != "answered"]
    return [sum(d.state == "delivered" and d.doc_status in ("delivered", "accepted", "assigned", "in_progress") for d in open_),
            sum(d.deadline < now for d in open_), sum(d.state == "dead" for d in held)]


def test_ioc_staff_log_in_search_a_report_and_read_an_agencys_figures(page, api_server: str, demo_run: DemoRun) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    violations: list[str] = []  # the page's Content Security Policy must not have to block anything
    page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None)
    # Not logged in: the page says so and points to Airflow's login.
    assert page.goto(f"{api_server}/paht/").status == 401
    page.get_by_role("link", name="Đăng nhập").click()
    page.get_by_label("Username").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{api_server}/paht/")
    expect(page.get_by_role("heading", name="Phiên đồng bộ gần đây")).to_be_visible()
    for dag_id in ("paht_ingest", "paht_deliver", "paht_poll_publish", "paht_ratings"):
        expect(page.locator(f'.card[data-dag="{dag_id}"]')).to_contain_text("Thành công")

    # One agency's figures, against the ledger as the CLI's `paht stats` reads it.
    with sessions(demo_run.ledger_url)() as session:
        busiest = max((a for a in figures(session).agencies if a.rated), key=lambda a: (a.received, a.agency_code))  # one rated (Open311 has no ratings)
    row = page.locator(f'[data-testid="agencies"] tr[data-deployment="{busiest.deployment}"][data-agency="{busiest.agency_code}"]')
    expect(row).to_contain_text(busiest.agency_name)
    shown = {field: row.locator(f'td[data-field="{field}"]').inner_text()
             for field in ("received", "delivered", "in_progress", "answered", "published", "overdue", "dead_lettered",
                           "needs_review", "rated", "satisfaction_rate", "median_days_to_answer")}
    assert [int(shown[f]) for f in ("received", "delivered", "answered", "published", "needs_review", "rated")] == \
        [busiest.received, busiest.delivered, busiest.answered, busiest.published, busiest.needs_review, busiest.rated]
    assert shown["satisfaction_rate"] == f"{100 * busiest.satisfaction_rate:.0f}%"
    assert [int(shown[f]) for f in ("in_progress", "overdue", "dead_lettered")] == held_by(demo_run.ledger_url, busiest.agency_code)
    total = page.locator('[data-testid="agencies"] tr[data-agency="total"] td[data-field="received"]')
    expect(total).to_have_text("86")  # 70 app reports and 16 Open311 requests
    for name in ("chart-backlog", "chart-overdue", "chart-satisfaction"):
        expect(page.locator(f'svg[data-testid="{name}"] rect').first).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "ioc_page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"\nIOC page screenshot: {screenshot}\nagency {busiest.agency_code} {busiest.agency_name}: {shown}")

    # Search a report: its whole trace, every event with its time (Vietnam time), run and document reference.
    source_id, events, deliveries = a_rerouted_report(demo_run.ledger_url)
    page.get_by_label("Mã phản ánh").fill(source_id.lower())
    page.get_by_label("Mã phản ánh").press("Enter")
    expect(page.get_by_test_id("report-id")).to_have_text(source_id)
    rows = page.locator('[data-testid="trace"] tbody tr')
    expect(rows).to_have_count(len(events))
    assert [rows.nth(i).get_attribute("data-kind") for i in range(len(events))] == [e.kind for e in events]
    first, last = rows.first.inner_text(), rows.last.inner_text()
    assert events[0].at.astimezone(VIETNAM_TZ).strftime("%d/%m/%Y %H:%M:%S") in first and events[0].run_id in first
    assert events[-1].run_id in last
    trace_text = page.get_by_test_id("trace").inner_text()
    for delivery in deliveries:
        assert delivery.external_ref in trace_text and delivery.document_id in trace_text
    expect(page.get_by_test_id("report-status")).to_contain_text("Người dân đã đánh giá")
    page.screenshot(path=str(ARTIFACTS / "ioc_trace.png"), full_page=True)

    # And the page sits in Airflow's own navigation, framed by Airflow's UI (frame-ancestors 'self').
    page.goto(f"{api_server}/plugin/paht-ioc")
    expect(page.frame_locator("iframe").first.get_by_role("heading", name="Theo cơ quan xử lý")).to_be_visible(timeout=30_000)
    assert violations == []
