"""Airflow's plugins folder: the IOC page, unless the installed package already registers it.

Airflow imports every ``.py`` file of its plugins folder as a top-level module; ``.airflowignore``
here leaves only this one, so the page's app (API-server code) is never imported by a
scheduler, worker or triggerer that loads plugins. The installed package registers the same
plugin through its ``airflow.plugins`` entry point; Airflow reports a second registration as an
import error, so this file stays silent whenever that entry point exists.
"""

from __future__ import annotations

from importlib.metadata import entry_points

if not any(ep.value.startswith("paht_bridge.") for ep in entry_points(group="airflow.plugins")):
    from paht_bridge.plugins.ioc_page import PahtIocPlugin  # noqa: F401 - found by Airflow's plugin loader
