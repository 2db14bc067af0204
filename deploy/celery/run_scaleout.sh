#!/usr/bin/env bash
# Airflow with CeleryExecutor on this machine: PostgreSQL metadata + ledger, Redis broker,
# scheduler, dag-processor, api-server, two Celery workers, the stand-ins; runs the whole
# lifecycle and checks nothing was delivered twice. See deploy/celery/README.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
exec "$repo/.venv/bin/python" "$here/run_scaleout.py" "$@"
