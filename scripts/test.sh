#!/usr/bin/env bash
# Set up the environment and run the tests on the real Postgres, Redis and Celery workers.
#   bash scripts/test.sh              the whole suite
#   bash scripts/test.sh -k import    extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/services.sh
export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
# House rules first: style (ruff) and the layer contracts (import-linter, pyproject.toml).
ruff check .
lint-imports --no-cache
exec python -m pytest -n "${TEST_PROCESSES:-2}" "$@"
