"""P2: the bridge's batch DAGs against one mapped task per report, both through ``dag.test()``.

Each side runs in a fresh worker process (``bench.dagtest``) with a private Airflow on
SQLite and a fresh sandbox holding the backlog. The bridge runs ``paht_ingest`` then
``paht_deliver`` on the whole backlog; the baseline (``bench/dags``) runs on a sample when
asked to, and its time is extrapolated linearly to the backlog (its cost is per task
instance: each is a separate task run with its own start-up and state writes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import REPO, sandbox


def _airflow_env(home: Path) -> dict[str, str]:
    from paht_bridge.demo import airflow_env

    env = airflow_env(home)
    env["AIRFLOW__CORE__MAX_MAP_LENGTH"] = "5000"
    return env


def _dagtest(env: dict[str, str], dag_ids: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-m", "bench.dagtest", *dag_ids], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=7200)
    if done.returncode != 0:
        raise RuntimeError(f"dag.test of {dag_ids} failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(reports: int, baseline_sample: int) -> dict:
    from paht_bridge.demo import migrate_airflow

    with tempfile.TemporaryDirectory(prefix="paht-bench-p2-") as tmp:
        home = Path(tmp)
        env = _airflow_env(home)
        migrate_airflow(env, home / "airflow-migrate.log")
        with sandbox() as box:
            box.call("POST", "/backlog", params={"n": reports})
            bridge = _dagtest({**env, **box.connection_env(), "PAHT_HOME": str(home / "bridge")}, ["paht_ingest", "paht_deliver"])
            created = box.call("GET", "/created")
        with sandbox() as box:
            box.call("POST", "/backlog", params={"n": baseline_sample})
            baseline = _dagtest({**env, **box.connection_env(), "PAHT_HOME": str(home / "baseline"),
                                 "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "bench" / "dags")}, ["paht_baseline_per_report"])
            baseline_created = box.call("GET", "/created")
    bridge_s = sum(r["seconds"] for r in bridge.values())
    sample_s = baseline["paht_baseline_per_report"]["seconds"]
    extrapolated = sample_s * reports / baseline_sample
    return {
        "reports": reports,
        "bridge": {**bridge, "seconds": round(bridge_s, 2), "documents": created["rest"] + created["soap"], "task_instances": 4},
        "baseline": {"sample": baseline_sample, "seconds_on_sample": sample_s, "task_instances_on_sample": baseline_sample + 1,
                     "documents_on_sample": baseline_created["rest"] + baseline_created["soap"],
                     "seconds_for_backlog": round(extrapolated, 1),
                     "extrapolated": baseline_sample != reports},
        "speedup": round(extrapolated / bridge_s, 1),
    }
