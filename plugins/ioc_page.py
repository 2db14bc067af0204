"""The Airflow plugin that puts the IOC page into Airflow's UI: what IOC staff see of the bridge, and act on.

Thin on purpose: the app is in ``ioc_app``, the figures in ``paht_bridge.ledger.figures``.
Airflow imports plugins in every process, task processes included, so the app (which pulls
in Airflow's API-server modules) is built only when the API server asks for it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/paht"


@cache
def ioc_app() -> Any:  # noqa: ANN401 - a FastAPI app, imported lazily
    from paht_bridge.plugins.ioc_app import create_ioc_app

    return create_ioc_app()


class PahtIocPlugin(AirflowPlugin):
    name = "paht_ioc"
    # In the navigation; Airflow shows the page in a frame at /plugin/paht-ioc.
    external_views = [{"name": "IOC PAHT", "href": f"{URL_PREFIX}/", "url_route": "paht-ioc",
                       "destination": "nav", "nav_top_level": True}]

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [{"app": ioc_app(), "url_prefix": URL_PREFIX, "name": "PAHT IOC page"}]
