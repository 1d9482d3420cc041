"""Bombs and huge input: a file that would expand past R1_MAX_EXPANDED_MB (zip, gzip, Parquet) or
holds a line over R1_MAX_LINE_MB is refused before it is read whole, names the bound, and leaves
nothing on disk; the same files within the bounds still land."""

import gzip
import json
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset as HFDataset
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from apps.datasets.models import Prompt
from apps.jobs.models import Job
from apps.jobs.runner import execute
from apps.rollouts.ingest import IngestFileError, detect_ingest_format
from apps.rollouts.models import Rollout
from tests.datasets.test_import import run_import
from tests.rollouts.test_ingest import ingest, verl_record

pytestmark = pytest.mark.django_db(transaction=True)  # the job's heartbeat thread has its own connection

MB = 1024 * 1024


@pytest.fixture
def bounds(settings, tmp_path):
    """Bounds small enough to cross with test files; uploads in a folder the test can look into."""
    settings.MAX_EXPANDED_BYTES = 1 * MB
    settings.MAX_LINE_BYTES = 64 * 1024
    settings.UPLOAD_DIR = tmp_path / "uploads"
    return settings


def leftovers(settings) -> list:
    return sorted(settings.UPLOAD_DIR.rglob("*")) if settings.UPLOAD_DIR.exists() else []


def write_gzip(path, lines: list[str]):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    return path


def test_a_gzip_bomb_is_refused_at_the_bound(dataset, tmp_path, bounds):
    path = tmp_path / "bomb.jsonl.gz"
    with gzip.open(path, "wb") as f:  # 8 MB of one JSON line's worth of spaces per line, ~10 kB compressed
        for _ in range(8 * MB // 60_000):
            f.write(b'{"question": "' + b" " * 60_000 + b'"}\n')
    assert path.stat().st_size < 100_000
    job = run_import(dataset, path)
    assert job.status == "failed" and "bomb.jsonl.gz (gzip) expands past" in job.error
    assert "1.0 MB (R1_MAX_EXPANDED_MB)" in job.error and Prompt.objects.count() == 0


def test_a_gzipped_jsonl_within_the_bounds_lands(dataset, tmp_path, bounds):
    path = write_gzip(tmp_path / "p.jsonl.gz", [json.dumps({"question": f"What is {i} + 1?"}) for i in range(20)])
    job = run_import(dataset, path)
    assert job.status == "succeeded", job.error
    assert job.params["format"] == "jsonl" and Prompt.objects.count() == 20


def test_a_line_over_the_bound_is_refused_with_its_number(dataset, tmp_path, bounds):
    path = tmp_path / "p.jsonl"
    path.write_text('{"question": "a"}\n{"question": "b"}\n{"question": "' + "x" * 100_000 + '"}\n')
    job = run_import(dataset, path)
    assert job.status == "failed" and "line 3: longer than 64.0 KB (R1_MAX_LINE_MB)" in job.error
    assert Prompt.objects.count() == 0
    with pytest.raises(IngestFileError, match="line 3: longer than 64.0 KB"):
        ingest(path, "jsonl", dataset)


def test_a_line_of_exactly_the_bound_is_read(dataset, tmp_path, bounds):
    question = "y" * (64 * 1024 - len('{"question": ""}'))
    path = tmp_path / "p.jsonl"
    path.write_text('{"question": "' + question + '"}\n')
    job = run_import(dataset, path)
    assert job.status == "succeeded", job.error
    assert Prompt.objects.get().question == question


def test_a_zip_bomb_uploaded_from_the_page_is_refused_and_leaves_nothing(admin_client, dataset, tmp_path, bounds):
    bomb = tmp_path / "saved.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data/state.json", "{}")
        archive.writestr("data/data-00000-of-00001.arrow", b"\0" * (5 * MB))
    assert bomb.stat().st_size < 50_000
    response = admin_client.post(reverse("dataset_import", args=[dataset.name]), {
        "file": SimpleUploadedFile("saved.zip", bomb.read_bytes()), "question_field": "question",
    })
    job = Job.objects.get(kind="import_prompts")
    assert response.status_code == 302 and job.params["format"] == "hf"
    assert leftovers(bounds)  # the upload waits for its job
    execute(job.pk, worker="test")
    job.refresh_from_db()
    assert job.status == "failed" and "the zip archive holds 5.0 MB uncompressed" in job.error
    assert leftovers(bounds) == [] and Prompt.objects.count() == 0  # nothing extracted, the upload gone


def test_a_zipped_saved_dataset_within_the_bound_lands_and_is_not_left_unzipped(dataset, tmp_path, bounds):
    HFDataset.from_list([{"question": f"q{i}"} for i in range(5)]).save_to_disk(tmp_path / "hf")
    path = tmp_path / "hf.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for file in (tmp_path / "hf").rglob("*"):
            archive.write(file, file.relative_to(tmp_path))
    job = run_import(dataset, path)
    assert job.status == "succeeded", job.error
    assert Prompt.objects.count() == 5 and leftovers(bounds) == []  # the private unzipped copy is gone


def test_a_parquet_file_whose_columns_expand_past_the_bound_is_refused_from_its_metadata(dataset, tmp_path, bounds):
    rows = [{"question": f"{i} " + "z" * 20_000} for i in range(200)]  # 4 MB of text, compressed to almost nothing
    path = tmp_path / "bomb.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, compression="zstd", use_dictionary=False)
    assert path.stat().st_size < 100_000
    job = run_import(dataset, path)
    assert job.status == "failed" and "bomb.parquet (Parquet) holds 3.8 MB uncompressed" in job.error
    with pytest.raises(IngestFileError, match=r"\(Parquet\) holds"):
        ingest(path, "trl", dataset)


def test_a_dictionary_encoded_parquet_bomb_stops_at_the_decoded_bound(dataset, tmp_path, bounds):
    """One 200 kB string repeated 2,000 times: the metadata counts it once, the decoded rows 400 MB."""
    path = tmp_path / "repeated.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "w" * 200_000}] * 2000), path, use_dictionary=True)
    assert pq.ParquetFile(path).metadata.row_group(0).total_byte_size < 1 * MB
    job = run_import(dataset, path)
    assert job.status == "failed" and "repeated.parquet (Parquet, decoded) expands past" in job.error


def test_a_gzipped_verl_dump_is_detected_and_lands(dataset, tmp_path, bounds):
    folder = tmp_path / "rollout_data"
    folder.mkdir()
    write_gzip(folder / "1.jsonl.gz", [json.dumps(verl_record("What is 2 + 2?", "4", 1, 1.0, True))])
    assert detect_ingest_format(folder) == "verl"
    assert ingest(folder, "verl", dataset).landed == 1 and Rollout.objects.count() == 1


def test_a_broken_gzip_file_is_named_and_lands_nothing(dataset, tmp_path, bounds):
    path = tmp_path / "p.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"question": "a"}\n' * 100)[:40])
    job = run_import(dataset, path)
    assert job.status == "failed" and "p.jsonl.gz is not a readable gzip file" in job.error
