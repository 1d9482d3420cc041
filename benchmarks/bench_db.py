"""A scratch Postgres database for benchmarks, created and migrated on first use."""

import os
import platform
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/r1bench"


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def setup_django(url: str = DEFAULT_URL) -> None:
    """Create the database if needed, point Django at it and migrate."""
    ensure_database(url)
    os.environ["DJANGO_SETTINGS_MODULE"] = "r1studio.settings"
    os.environ["DATABASE_URL"] = url
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def machine() -> dict:
    from django.db import connection

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with connection.cursor() as c:
        c.execute("SELECT version()")
        pg = c.fetchone()[0]
        settings = {}
        for name in ("shared_buffers", "synchronous_commit", "max_wal_size"):
            c.execute(f"SHOW {name}")
            settings[name] = c.fetchone()[0]
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or str(os.cpu_count())
    return {"nproc": nproc, "cpu": cpu, "postgres": pg, "pg_settings": settings,
            "python": platform.python_version()}


def print_machine() -> None:
    """The date, machine, Postgres and its settings, and the load: the header every benchmark prints."""
    info = machine()
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine: nproc={info['nproc']}, cpu={info['cpu']}, python {info['python']}")
    print(f"postgres: {info['postgres']}")
    print("postgres settings: " + ", ".join(f"{k}={v}" for k, v in info["pg_settings"].items()))
    print("load average at start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
