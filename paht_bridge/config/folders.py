"""Where deployment mappings, presets and vendors' WSDLs are read from.

*Live deployments* are the YAML files in the folder the operator chooses: ``deployments_folder``
in the ``[paht]`` section of Airflow's configuration (or, as for every Airflow setting, the
environment variable ``AIRFLOW__PAHT__DEPLOYMENTS_FOLDER``). Without it, a checkout uses its
own ``mappings/``; an installed wheel has no default, so no sample province is ever live by
accident.

*Shipped mappings* (presets for known kinds of back end, vendors' WSDLs, the sample
deployments the demo runs) are the checkout's ``mappings/``, or the copy of it inside the
installed wheel (``paht_bridge/mappings``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]
#: The repository, when the package runs from a checkout (an editable install, the tests, the demo).
CHECKOUT = _PACKAGE.parent if (_PACKAGE.parent / "pyproject.toml").is_file() else None


class NoDeploymentsFolder(RuntimeError):
    """Neither Airflow's ``[paht] deployments_folder`` nor a checkout says where deployments are."""


def shipped_mappings() -> Path:
    """The shipped ``mappings/``: the checkout's, else the wheel's copy inside the package."""
    if CHECKOUT is not None:
        return CHECKOUT / "mappings"
    return _PACKAGE / "mappings"


def presets_folder() -> Path:
    return shipped_mappings() / "presets"


@cache
def deployments_folder() -> Path:
    """The folder of live deployment files (read once per process)."""
    from airflow.configuration import conf  # only here: reading a mapping file needs no Airflow

    chosen = conf.get("paht", "deployments_folder", fallback=None)
    if chosen:
        return Path(chosen).expanduser()
    if CHECKOUT is not None:
        return CHECKOUT / "mappings"
    raise NoDeploymentsFolder(
        "no deployments folder: set deployments_folder in the [paht] section of airflow.cfg "
        "(or AIRFLOW__PAHT__DEPLOYMENTS_FOLDER) to the folder holding your deployment YAML files"
    )
