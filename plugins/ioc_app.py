"""The IOC page's FastAPI app: server-rendered HTML for IOC staff and the same data as JSON.

Every route sits behind Airflow's login: the app-level dependency ``requires_authenticated``
(a plugin's app gets no protection by itself). What it shows comes from the ledger's read
modules (``runs``, ``figures``, ``timeline``, ``report_detail``, ``replayable``); this module
only wires requests to them and renders.
The page reads the ledger, never Airflow's metadata database, and never shows a reporter's
name or phone. It changes the ledger only through the operators' own functions (replaying dead
letters, undoing a duplicate link), each behind the permission Airflow's auth manager grants
(``permissions``) and, like every write, a strict same-origin check (``web_guard``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import cache
from html import escape
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import BaseModel, Field, ValidationError, model_validator
from sqlalchemy.orm import Session

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import GetUserDep, requires_authenticated
from paht_bridge.ledger.db import ledger_url, migrate, sessions
from paht_bridge.ledger.figures import FigureTables, figures
from paht_bridge.ledger.replayable import DeadLetter, QuarantineItem, dead_letters, quarantine
from paht_bridge.ledger.report_detail import ReportDetail, matching_reports, report_detail, similar_report_ids
from paht_bridge.ledger.runs import DagRuns, recent_runs
from paht_bridge.ledger.timeline import DayPoint, timeline
from paht_bridge.operations.replay import replay_dead_letters
from paht_bridge.operations.unlink import UnlinkRefused, unlink_duplicate
from paht_bridge.steps.context import operator_context
from paht_bridge.canonical import VIETNAM_TZ, vietnam_now
from paht_bridge.config.deployment import deployment, deployment_names
from paht_bridge.plugins import labels
from paht_bridge.plugins.charts import ChartPoint, bar_chart
from paht_bridge.plugins.permissions import DELIVER_DAG, may_act, requires_ioc_action
from paht_bridge.plugins.web_guard import SecurityHeaders, form_only, json_only, same_origin

TEMPLATES = Path(__file__).parent / "templates"


def ledger_session() -> Iterator[Session]:
    """A ledger session per request (the ledger is migrated once per process, like the CLI does).

    The URL is resolved here on every request: ``db.engine()`` caches its no-argument call.
    """
    url = ledger_url()
    migrate(url)
    with sessions(url)() as session:
        yield session


LedgerDep = Annotated[Session, Depends(ledger_session)]
#: Replay and unlink hand work to the deliver DAG: acting needs the right to edit its runs.
acts_on_deliveries = requires_ioc_action(DELIVER_DAG)


# -- rendering ----------------------------------------------------------------------------------


def _vn_time(value: datetime | None, fmt: str = "%d/%m/%Y %H:%M:%S") -> str:
    return value.astimezone(VIETNAM_TZ).strftime(fmt) if value else "–"


def _percent(value: float | None) -> str:
    return f"{100 * value:.0f}%" if value is not None else "–"


def _days(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 1:
        return f"{value * 24:.1f} giờ".replace(".", ",")
    return f"{value:.1f} ngày".replace(".", ",")


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} s".replace(".", ",")


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined, trim_blocks=True,
                      lstrip_blocks=True)
    env.filters.update(vn=_vn_time, pct=_percent, days=_days, secs=_seconds)
    env.globals.update(labels=labels)
    return env


_env = _environment()


@cache
def _deployment_words() -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """Province names and category names from the mapping files, for labels (codes stay visible)."""
    names, categories = {}, {}
    for name in deployment_names():
        mapping = deployment(name)
        names[name] = mapping.name.split(" — ")[0]
        categories.update({(name, code): category.name for code, category in mapping.categories.items()})
    return names, categories


def render(request: Request, template: str, status_code: int = 200, **context: object) -> HTMLResponse:
    def path_for(name: str, **query: object) -> str:
        path = request.url_for(name).path
        query = {k: v for k, v in query.items() if v not in (None, "")}
        return f"{path}?{urlencode(query)}" if query else path

    names, categories = _deployment_words()
    nonce = getattr(request.state, "csp_nonce", "")  # set by SecurityHeaders, which sends it in the policy
    html = _env.get_template(template).render(path_for=path_for, now=vietnam_now(), names=names, categories=categories,
                                              csp_nonce=nonce, **context)
    return HTMLResponse(html, status_code=status_code)


def charts(points: list[DayPoint]) -> dict[str, object]:
    def label(p: DayPoint) -> str:
        return p.day.strftime("%d/%m")

    return {
        "backlog": bar_chart([ChartPoint(label=label(p), value=p.backlog_peak, marker=p.backlog_end,
                                         tooltip=f"{p.day:%d/%m/%Y}: cao nhất {p.backlog_peak}, cuối ngày {p.backlog_end}")
                              for p in points], title="Tồn đọng theo ngày", color="#60a5fa", test_id="chart-backlog"),
        "overdue": bar_chart([ChartPoint(label=label(p), value=p.overdue_peak, marker=p.overdue_end,
                                         tooltip=f"{p.day:%d/%m/%Y}: cao nhất {p.overdue_peak}, cuối ngày {p.overdue_end}")
                              for p in points], title="Quá hạn theo ngày", color="#f87171", test_id="chart-overdue"),
        "satisfaction": bar_chart([ChartPoint(label=label(p), value=p.satisfaction_rate,
                                              tooltip=f"{p.day:%d/%m/%Y}: {_percent(p.satisfaction_rate)} hài lòng "
                                                      f"(trong ngày {p.satisfied_that_day}/{p.rated_that_day})")
                                   for p in points], title="Tỷ lệ hài lòng (luỹ kế)", color="#34d399", percent=True,
                                  test_id="chart-satisfaction"),
    }


# -- the app ------------------------------------------------------------------------------------


class ReplayRequest(BaseModel):
    """Which dead letters to put back in line; an empty request must say ``all`` on purpose."""

    source_id: str | None = None
    agency_code: str | None = None
    deployment: str | None = None
    all: bool = False

    @model_validator(mode="after")
    def _says_what(self) -> ReplayRequest:
        if not (self.all or self.source_id or self.agency_code or self.deployment):
            raise ValueError("name a report, an agency or a deployment, or set all")
        return self


class ReplayResult(BaseModel):
    replayed: list[str]  # the deliveries' external references


# Bodies are read by dependencies, not declared as body parameters: FastAPI parses declared
# bodies before any dependency runs, so a malformed body from an anonymous caller would get
# 422 instead of 401. The app's dependencies (the login, the same-origin check) and a route's
# own (the permission to act) run before these, so a refused caller's body is never read.


async def _json(request: Request, model: type[BaseModel]) -> BaseModel:
    json_only(request)
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as error:
        raise RequestValidationError(error.errors(include_url=False)) from None


async def json_body(request: Request) -> ReplayRequest:
    return await _json(request, ReplayRequest)  # type: ignore[return-value]


async def form_body(request: Request) -> ReplayRequest:
    form_only(request)
    form = await request.form()
    try:
        return ReplayRequest(source_id=form.get("source_id") or None, agency_code=form.get("agency_code") or None,
                             deployment=form.get("deployment") or None, all=form.get("all") == "true")
    except ValidationError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "chọn phản ánh, cơ quan hoặc tỉnh cần gửi lại") from error


def _replay(session: Session, request: ReplayRequest, user: str) -> ReplayResult:
    refs = replay_dead_letters(session, source_id=request.source_id or None, agency_code=request.agency_code or None,
                               deployment=request.deployment or None, run_id=f"ioc-page:{user}")
    return ReplayResult(replayed=refs)


class UnlinkRequest(BaseModel):
    """A duplicate link IOC staff found wrong, and why (kept on both reports' traces)."""

    source: str = Field(min_length=1, max_length=64)
    source_id: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=3, max_length=500)


class UnlinkResult(BaseModel):
    deliveries: list[str]  # the report's own new deliveries' external references


async def unlink_json(request: Request) -> UnlinkRequest:
    return await _json(request, UnlinkRequest)  # type: ignore[return-value]


async def unlink_body(request: Request) -> UnlinkRequest:
    form_only(request)
    form = await request.form()
    try:
        return UnlinkRequest(source=form.get("source") or "", source_id=form.get("source_id") or "",
                             reason=(form.get("reason") or "").strip())
    except ValidationError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "ghi lý do tách (ít nhất 3 ký tự)") from error


def _report_page(request: Request, session: Session, user: BaseUser, q: str, source: str | None,
                 status_code: int | None = None, **notice: object) -> HTMLResponse:
    matches = matching_reports(session, q, source) if q.strip() else []
    detail = report_detail(session, matches[0].source_id, matches[0].source) if matches else None
    notices = {"unlinked": False, "unlink_refused": None, **notice}
    return render(request, "ioc/report.html", status_code=status_code or (200 if detail else 404), user=user.get_name(),
                  may_act=may_act(user, DELIVER_DAG), q=q.strip(), detail=detail,
                  others=[(m.source, m.source_id) for m in matches[1:]],
                  similar=[] if detail else similar_report_ids(session, q), **notices)


def _unlink(session: Session, wanted: UnlinkRequest, user: BaseUser) -> list[str]:
    """Undo the link (``UnlinkRefused`` says why not); the trace names the acting user."""
    found = matching_reports(session, wanted.source_id, wanted.source)
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no report {wanted.source_id!r} in the ledger")
    ctx = operator_context(found[0].deployment, f"ioc-page:{user.get_name()}", ledger_url())
    session.close()  # the unlink writes in its own transaction
    return unlink_duplicate(ctx, found[0].id, wanted.reason)


async def _refused_page(request: Request, exc: Exception) -> Response:
    """Browsers get a page: for 401 one pointing to Airflow's login, for 403 one saying why the
    action was refused. API clients keep the JSON answer. The status stays what it was."""
    if not (isinstance(exc, HTTPException) and "text/html" in request.headers.get("accept", "")):
        return await http_exception_handler(request, exc)  # type: ignore[arg-type]
    if exc.status_code == 401:
        login = get_auth_manager().get_url_login(next_url=request.url.path)
        return HTMLResponse('<!doctype html><meta charset="utf-8"><title>Cần đăng nhập</title>'
                            f'<p>Cần đăng nhập Airflow để xem trang IOC. <a href="{escape(login)}">Đăng nhập</a></p>',
                            status_code=401)
    if exc.status_code == 403:
        return render(request, "ioc/refused.html", status_code=403, shown=getattr(exc, "shown", None), detail=str(exc.detail))
    return await http_exception_handler(request, exc)


def create_ioc_app() -> FastAPI:
    # No /docs or /openapi.json: they would be routes outside the login. The login runs first
    # (an anonymous caller learns 401 and nothing more), then the same-origin check of writes.
    app = FastAPI(title="PAHT IOC", dependencies=[Depends(requires_authenticated()), Depends(same_origin)], docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.add_exception_handler(HTTPException, _refused_page)
    app.add_middleware(SecurityHeaders)

    @app.get("/", response_class=HTMLResponse, name="ioc_index")
    def index(request: Request, session: LedgerDep, user: GetUserDep, replayed: int | None = None) -> HTMLResponse:
        points = timeline(session)
        return render(request, "ioc/index.html", user=user.get_name(), may_act=may_act(user, DELIVER_DAG),
                      runs=recent_runs(session), tables=figures(session), charts=charts(points), days=points,
                      dead=dead_letters(session), quarantine=quarantine(session), replayed=replayed)

    @app.get("/reports", response_class=HTMLResponse, name="ioc_report")
    def report(request: Request, session: LedgerDep, user: GetUserDep, q: Annotated[str, Query(max_length=128)] = "",
               source: Annotated[str | None, Query(max_length=64)] = None, unlinked: bool = False) -> HTMLResponse:
        return _report_page(request, session, user, q, source, unlinked=unlinked)

    # Actions: the permission is a route dependency, so it is checked before the body is read.
    @app.post("/reports/unlink", name="ioc_unlink", dependencies=[Depends(acts_on_deliveries)])
    def unlink_form(request: Request, session: LedgerDep, user: GetUserDep,
                    wanted: Annotated[UnlinkRequest, Depends(unlink_body)]) -> Response:
        try:
            _unlink(session, wanted, user)
        except UnlinkRefused as refused:
            return _report_page(request, session, user, wanted.source_id, wanted.source, status_code=409,
                                unlink_refused=(labels.UNLINK_REFUSED.get(refused.code, refused.code), str(refused)))
        query = urlencode({"q": wanted.source_id, "source": wanted.source, "unlinked": "true"})
        return RedirectResponse(f"{request.url_for('ioc_report').path}?{query}", status_code=status.HTTP_303_SEE_OTHER)

    @app.post("/dead-letters/replay", name="ioc_replay", dependencies=[Depends(acts_on_deliveries)])
    def replay_form(request: Request, session: LedgerDep, user: GetUserDep,
                    wanted: Annotated[ReplayRequest, Depends(form_body)]) -> RedirectResponse:
        result = _replay(session, wanted, user.get_name())
        return RedirectResponse(f"{request.url_for('ioc_index').path}?replayed={len(result.replayed)}#dead-letters",
                                status_code=status.HTTP_303_SEE_OTHER)

    @app.get("/api/runs")
    def api_runs(session: LedgerDep, per_dag: Annotated[int, Query(ge=1, le=100)] = 10) -> list[DagRuns]:
        return recent_runs(session, per_dag)

    @app.get("/api/figures")
    def api_figures(session: LedgerDep, deployment: str | None = None) -> FigureTables:
        return figures(session, deployment)

    @app.get("/api/timeline")
    def api_timeline(session: LedgerDep, days: Annotated[int, Query(ge=1, le=366)] = 30) -> list[DayPoint]:
        return timeline(session, days)

    @app.get("/api/reports/{source_id}")
    def api_report(session: LedgerDep, source_id: str, source: str | None = None) -> ReportDetail:
        detail = report_detail(session, source_id, source)
        if detail is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no report {source_id!r} in the ledger")
        return detail

    @app.get("/api/dead-letters")
    def api_dead_letters(session: LedgerDep) -> list[DeadLetter]:
        return dead_letters(session)

    @app.get("/api/quarantine")
    def api_quarantine(session: LedgerDep, include_resolved: bool = False) -> list[QuarantineItem]:
        return quarantine(session, include_resolved)

    @app.post("/api/dead-letters/replay", dependencies=[Depends(acts_on_deliveries)])
    def api_replay(session: LedgerDep, user: GetUserDep, body: Annotated[ReplayRequest, Depends(json_body)]) -> ReplayResult:
        return _replay(session, body, user.get_name())

    @app.post("/api/reports/unlink", dependencies=[Depends(acts_on_deliveries)])
    def api_unlink(session: LedgerDep, user: GetUserDep, body: Annotated[UnlinkRequest, Depends(unlink_json)]) -> UnlinkResult:
        try:
            return UnlinkResult(deliveries=_unlink(session, body, user))
        except UnlinkRefused as refused:
            raise HTTPException(status.HTTP_409_CONFLICT, {"code": refused.code, "message": str(refused)}) from None

    return app
