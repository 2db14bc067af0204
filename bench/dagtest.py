"""P2 worker: time DAG runs with ``dag.test()`` in a private Airflow (run as a subprocess).

``python -m bench.dagtest DAG_ID [DAG_ID…]`` with the Airflow environment, the stand-ins'
connections and ``PAHT_HOME`` set by the caller; prints one JSON line: seconds per DAG run
and the task instances it ran.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from contextlib import redirect_stderr, redirect_stdout

def main(dag_ids: list[str]) -> dict:
    from airflow.dag_processing.dagbag import DagBag

    log = open(os.devnull, "w")  # noqa: SIM115 - Airflow's task logs are not the figure
    with redirect_stdout(log), redirect_stderr(log):
        bags = [DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])]  # dag.test() runs DAGs of the configured folder only
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setStream(log)
    dags = {dag_id: dag for bag in bags for dag_id, dag in bag.dags.items()}
    out: dict = {}
    for dag_id in dag_ids:
        started = time.perf_counter()
        with redirect_stdout(log), redirect_stderr(log):
            run = dags[dag_id].test()
        seconds = time.perf_counter() - started
        out[dag_id] = {"seconds": round(seconds, 2), "state": str(run.state)}
    return out


if __name__ == "__main__":
    result = main(sys.argv[1:])
    print(json.dumps(result))
