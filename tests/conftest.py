import json
import tempfile
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import connection

from apps.core.roles import ROLES
from apps.datasets.models import Dataset
from apps.jobs.models import Job
from tests.fake_openai import FakeServer
from tests.worker import CeleryWorker

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@pytest.fixture(scope="session")
def session_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """One real Celery worker (with beat, for the stale-job check) on Redis and the test database."""
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()  # no task left from an earlier run
    with django_db_blocker.unblock():
        url = database_url()
    worker = CeleryWorker(url, tmp_path_factory.mktemp("celery") / "worker.log").start()
    yield worker
    worker.stop()


@pytest.fixture
def celery_worker(session_worker):
    """The session's worker, started again if a test stopped it (the kill test does)."""
    if session_worker.proc.poll() is not None:
        session_worker.start()
    return session_worker


@pytest.fixture
def start_worker(django_db_setup, tmp_path):
    """Start extra workers inside a test (for the kill test); they are stopped afterwards."""
    started = []

    def start(beat=True):
        worker = CeleryWorker(database_url(), tmp_path / f"worker{len(started)}.log", beat=beat).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(predicate, timeout=30.0, interval=0.1, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def wait_for_job(job: Job, statuses=Job.FINISHED, timeout=60.0) -> Job:
    def done():
        job.refresh_from_db()
        return job.status in statuses

    wait_for(done, timeout, message=f"job {job.pk} to reach {statuses} (it is {job.status})")
    return job


def make_user(username: str, role: str | None = None, **extra) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username, **extra)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture(autouse=True)
def import_roots(settings):
    """As an operator would: server paths under the temporary folder (where tests write files) may be named."""
    settings.IMPORT_ROOTS = [Path(tempfile.gettempdir()).resolve()]
    return settings.IMPORT_ROOTS


@pytest.fixture
def users(db):
    return {role: make_user(role + "_user", role) for role in ROLES} | {"stranger": make_user("stranger")}


@pytest.fixture
def admin_client(client, users):
    client.force_login(users["admin"])
    return client


@pytest.fixture
def dataset(db):
    return Dataset.objects.create(name="gsm-mini", description="test prompts")


def write_jsonl(path: Path, records) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return path


@pytest.fixture
def artifacts():
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def live_database_env(monkeypatch, transactional_db):
    """Point subprocesses (manage.py commands) at the test database."""
    monkeypatch.setenv("DATABASE_URL", database_url())


@pytest.fixture
def server():
    """A fake OpenAI-compatible server on loopback (tests/fake_openai.py)."""
    fake = FakeServer()
    yield fake
    fake.stop()


@pytest.fixture
def page(live_server, admin_client, monkeypatch):
    """A headless Chromium page on the live server, signed in as the admin; it fails the test on a page
    error or a refused Content-Security-Policy."""
    from playwright.sync_api import sync_playwright

    from tests.r1studio.test_browser import CHROMIUM, CHROMIUM_ARGS

    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=live_server.url)
        context.add_cookies([{"name": "sessionid", "value": admin_client.cookies["sessionid"].value,
                              "url": live_server.url}])
        page = context.new_page()
        errors, refused = [], []
        page.on("pageerror", lambda error: errors.append(str(error)))
        # The Content-Security-Policy (apps/core/middleware.py) must not refuse anything our pages use.
        page.on("console", lambda message: "Content Security Policy" in message.text and refused.append(message.text))
        yield page
        browser.close()
        assert errors == [], errors  # no page threw a JavaScript error
        assert refused == [], refused
