"""Airflow's ``hostname_callable`` for the one-machine scale-out: each Celery worker names
itself (``PAHT_WORKER_NAME``), so the task instances show which worker ran them."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("PAHT_WORKER_NAME") or socket.getfqdn()
