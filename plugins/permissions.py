"""Who may act on the IOC page: one rule, asked of Airflow's auth manager, for every action.

Reading the page needs a login (the app's own dependency). Changing the ledger needs the
right to *edit the runs of the DAG whose work the action changes*: replaying a dead letter or
undoing a duplicate link hands work to ``paht_deliver``, so acting is asked as
``is_authorized_dag(method="PUT", access_entity=RUN, details=DagDetails(id="paht_deliver"))``.
Airflow's own roles and permissions decide (SimpleAuthManager: user, op and admin; the FAB
auth manager: ``can_edit`` on DAG Runs, and on DAGs or on that DAG alone), and no role name
appears in our code. A custom-view permission would not do: SimpleAuthManager answers it by
role alone and ignores the method, so a Viewer would pass a POST.

``requires_ioc_action(dag_id)`` is the FastAPI dependency every action route uses (the IOC
review desk's too); ``may_act`` is the same question for the page, to hide what a user may
not use (the server's check is the one that counts).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException, status

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import GetUserDep
from airflow.configuration import conf

#: The DAG that sends what replay and unlink put back in line.
DELIVER_DAG = "paht_deliver"


class Refused(HTTPException):
    """A 403 IOC staff can read: ``detail`` for API clients, ``shown`` (Vietnamese) on the page."""

    def __init__(self, detail: str, shown: str) -> None:
        super().__init__(status.HTTP_403_FORBIDDEN, detail)
        self.shown = shown


def _team(dag_id: str) -> str | None:
    """The DAG's team, as Airflow's own DAG routes pass it; only multi-team Airflow has one
    (the look-up reads Airflow's metadata database, so it is skipped otherwise)."""
    if not conf.getboolean("core", "multi_team", fallback=False):
        return None
    from airflow.models.dag import DagModel

    return DagModel.get_team_name(dag_id)


def may_act(user: BaseUser, dag_id: str) -> bool:
    """Whether Airflow's auth manager lets ``user`` edit the runs of ``dag_id``."""
    return get_auth_manager().is_authorized_dag(method="PUT", access_entity=DagAccessEntity.RUN,
                                                details=DagDetails(id=dag_id, team_name=_team(dag_id)), user=user)


def requires_ioc_action(dag_id: str) -> Callable[[BaseUser], BaseUser]:
    """A dependency that lets the request through only for a user who may act on ``dag_id``'s
    work; it returns that user (the actor the trace records)."""

    def check(user: GetUserDep) -> BaseUser:
        if not may_act(user, dag_id):
            raise Refused(f"user {user.get_name()!r} may not act here: this needs the permission to edit the runs "
                          f"of DAG {dag_id!r} in Airflow",
                          f"Tài khoản {user.get_name()} chỉ có quyền xem. Thao tác này cần quyền sửa các lần chạy "
                          f"(DAG runs) của DAG {dag_id} trong Airflow: xin quản trị viên Airflow cấp quyền.")
        return user

    return check
