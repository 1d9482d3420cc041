"""Loaded with `-p tests.pg_env` before Django starts: the tests run on the real Postgres and Redis.

Each pytest-xdist worker gets its own Redis database, as it gets its own test
database, so parallel workers never share a queue.
"""

import os

_xdist = os.environ.get("PYTEST_XDIST_WORKER", "")
# R1_TEST_SLOT=N keeps a second pytest run on this machine apart (its own Redis databases and data folder;
# give it its own DATABASE_URL too).
_slot = int(os.environ.get("R1_TEST_SLOT", "0"))
# Three databases a slot (a run alone, or xdist's gw0 and gw1): slots 0-4 fit Redis's default 16.
_redis_db = (int(_xdist.removeprefix("gw")) + 1 if _xdist else 0) + 3 * _slot
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
os.environ["CELERY_BROKER_URL"] = f"{os.environ.get('TEST_REDIS_URL', 'redis://127.0.0.1:6379')}/{_redis_db}"
os.environ.setdefault("JOB_HEARTBEAT_SECONDS", "0.5")
os.environ.setdefault("JOB_STALE_SECONDS", "3")
os.environ.setdefault("JOB_REAPER_INTERVAL_SECONDS", "1")
os.environ["R1_DATA_DIR"] = f"/tmp/r1studio-tests{_slot or ''}{_xdist}"
# Two test processes share two cores: one torch thread per training run (ML-NOTES: more contend 4-5x).
os.environ.setdefault("R1_TRAINING_CPU_THREADS", "1")
