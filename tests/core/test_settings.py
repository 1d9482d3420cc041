"""Settings come from the environment and fail loudly on bad values."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from r1studio import env

ROOT = Path(__file__).resolve().parents[2]


def test_typed_helpers_parse_and_refuse(monkeypatch):
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_INT", "12")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    assert env.env_bool("X_BOOL", False) is True
    assert env.env_int("X_INT", 0) == 12
    assert env.env_list("X_LIST", []) == ["a", "b", "c"]
    assert env.env_int("X_MISSING", 7) == 7
    monkeypatch.setenv("X_BOOL", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_BOOL='maybe' is not a boolean"):
        env.env_bool("X_BOOL", False)
    monkeypatch.setenv("X_INT", "twelve")
    with pytest.raises(ImproperlyConfigured, match="X_INT='twelve' is not an integer"):
        env.env_int("X_INT", 0)
    with pytest.raises(ImproperlyConfigured, match="must be at least 20"):
        monkeypatch.setenv("X_INT", "3")
        env.env_int("X_INT", 0, minimum=20)


def test_secrets_can_come_from_a_file(monkeypatch, tmp_path):
    (tmp_path / "key").write_text("s3cret\n")
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "key"))
    assert env.env_secret("X_SECRET") == "s3cret"
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        env.env_secret("X_SECRET")


def load_settings(**overrides) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "R1_ENV"}} | overrides
    return subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=environ,
                          capture_output=True, text=True)


def test_production_refuses_the_default_secret_key():
    result = load_settings(R1_ENV="production")
    assert result.returncode != 0
    assert "needs SECRET_KEY" in result.stderr


def test_production_refuses_debug():
    result = load_settings(R1_ENV="production", SECRET_KEY="k" * 50, DEBUG="1")
    assert result.returncode != 0
    assert "refuses DEBUG=1" in result.stderr


def test_production_starts_with_a_real_key():
    result = load_settings(R1_ENV="production", SECRET_KEY="k" * 50)
    assert result.returncode == 0, result.stderr


def test_a_malformed_setting_stops_start_up():
    result = load_settings(JOB_HEARTBEAT_SECONDS="soon")
    assert result.returncode != 0 and "JOB_HEARTBEAT_SECONDS='soon' is not a number" in result.stderr


def test_the_embedded_default_needs_no_server(tmp_path):
    environ = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, "
            "s.DATABASES['default']['OPTIONS']['init_command'])")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env=environ | {"R1_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "sqlite3 filesystem:// PRAGMA journal_mode=WAL" in result.stdout


def test_migrations_match_the_models():
    result = subprocess.run([sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
