#!/usr/bin/env bash
# Set up the environment, then migrate, seed the demo and serve it with a Celery worker.
# With no DATABASE_URL / CELERY_BROKER_URL this is SQLite and a local broker under ./var.
#   bash scripts/demo.sh [--port 8000] [--host 127.0.0.1]
set -euo pipefail
cd "$(dirname "$0")/.."
R1_EXTRAS="${R1_EXTRAS:-train,dev}" source scripts/setup.sh
exec r1studio demo "$@"
