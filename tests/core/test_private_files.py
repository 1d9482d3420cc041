"""What the sandbox (or another local user) should not see does not lie around: uploads are
private and deleted when their job ends, the embedded SQLite file is this user's only."""

import json
import stat

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.utils import ConnectionHandler

from apps.core.uploads import save_upload
from apps.datasets.models import Dataset, Prompt
from apps.jobs import launching
from apps.jobs.models import Job
from apps.jobs.runner import execute

PROMPTS = b'{"question": "Write f.", "answer": "", "domain": "code", "tests": [{"input": "1", "output": "2"}]}\n'


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def uploads(settings, tmp_path):
    settings.UPLOAD_DIR = tmp_path / "data" / "uploads"
    return settings.UPLOAD_DIR


def test_an_upload_is_written_for_this_user_only(uploads):
    path = save_upload(SimpleUploadedFile("../../prompts.jsonl", PROMPTS))
    assert path.read_bytes() == PROMPTS
    assert path.parent.parent == uploads  # the name cannot climb out
    assert (mode(uploads), mode(path.parent), mode(path)) == (0o700, 0o700, 0o600)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("content, status", [(PROMPTS, Job.Status.SUCCEEDED), (b"{not json\n", Job.Status.FAILED)])
def test_an_upload_is_deleted_when_its_job_ends(uploads, content, status):
    dataset = Dataset.objects.create(name="private")
    path = save_upload(SimpleUploadedFile("prompts.jsonl", content))
    job = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)}, enqueue=False)
    execute(job.pk, worker="test")
    job.refresh_from_db()
    assert job.status == status, job.error
    assert not path.parent.exists()
    assert Prompt.objects.filter(dataset=dataset).count() == (1 if status == Job.Status.SUCCEEDED else 0)


@pytest.mark.django_db
def test_an_upload_is_deleted_when_its_job_is_cancelled_before_it_runs(uploads):
    dataset = Dataset.objects.create(name="cancelled")
    path = save_upload(SimpleUploadedFile("prompts.jsonl", PROMPTS))
    job = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)}, enqueue=False)
    assert job.request_cancel() and not path.parent.exists()


@pytest.mark.django_db(transaction=True)
def test_a_server_path_is_never_deleted(uploads, tmp_path):
    dataset = Dataset.objects.create(name="server-path")
    path = tmp_path / "mine.jsonl"
    path.write_bytes(PROMPTS)
    job = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)}, enqueue=False)
    execute(job.pk, worker="test")
    assert path.read_bytes() == PROMPTS


@pytest.mark.django_db
def test_uploads_previewed_and_never_ingested_are_swept_after_a_day(uploads, settings):
    import os
    import time

    from apps.jobs.tasks import sweep_stale_uploads

    abandoned, waiting, fresh = (save_upload(SimpleUploadedFile(f"{n}.jsonl", PROMPTS)) for n in "awf")
    day_ago = time.time() - 25 * 3600
    for path in (abandoned, waiting):
        os.utime(path.parent, (day_ago, day_ago))
    dataset = Dataset.objects.create(name="swept")
    launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(waiting)}, enqueue=False)  # queued
    assert sweep_stale_uploads() == 1
    assert (abandoned.exists(), waiting.exists(), fresh.exists()) == (False, True, True)


def test_the_embedded_sqlite_file_is_this_users_only(tmp_path, django_db_blocker):
    name = tmp_path / "db.sqlite3"
    connection = ConnectionHandler({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(name)}})["default"]
    with django_db_blocker.unblock():
        check_sqlite_modes(connection, name, tmp_path)


def check_sqlite_modes(connection, name, tmp_path):
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("CREATE TABLE t (x)")
    connection.close()
    connection.ensure_connection()  # the WAL files exist from the first connection on
    try:
        assert mode(name) == 0o600
        assert all(mode(p) == 0o600 for p in tmp_path.glob("db.sqlite3-*")), (
            json.dumps([str(p) for p in tmp_path.iterdir()]))
    finally:
        connection.close()
