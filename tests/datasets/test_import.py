"""Prompt import: every format, the field mapping, de-duplication, and bad files that write nothing."""

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset as HFDataset
from datasets import DatasetDict

from apps.datasets.models import Prompt
from apps.jobs import launching
from apps.jobs.runner import execute
from tests.conftest import write_jsonl

pytestmark = pytest.mark.django_db(transaction=True)  # the job's heartbeat thread has its own connection

RECORDS = [
    {"question": "What is 2 + 2?", "answer": "4", "source": "a"},
    {"question": "What is 3 * 3?", "answer": 9, "source": "b"},
    {"question": "Write f(x) returning x + 1.", "answer": "", "domain": "code",
     "tests": [{"input": "1", "output": "2"}], "source": "c"},
]


def run_import(dataset, path, **params):
    job = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path), **params}, enqueue=False)
    execute(job.pk, worker="test")
    job.refresh_from_db()
    return job


def assert_three_prompts_landed(dataset):
    prompts = {p.question: p for p in Prompt.objects.filter(dataset=dataset)}
    assert set(prompts) == {r["question"] for r in RECORDS}
    assert prompts["What is 3 * 3?"].reference_answer == "9"
    code = prompts["Write f(x) returning x + 1."]
    assert (code.domain, code.tests) == ("code", [{"input": "1", "output": "2"}])
    assert prompts["What is 2 + 2?"].metadata == {"source": "a"}
    assert prompts["What is 2 + 2?"].domain == "math" and prompts["What is 2 + 2?"].language == "en"


def test_it_imports_jsonl(dataset, tmp_path):
    job = run_import(dataset, write_jsonl(tmp_path / "p.jsonl", RECORDS))
    assert job.status == "succeeded", job.error
    assert job.result == {"records": 3, "inserted": 3, "skipped_duplicates": 0}
    assert_three_prompts_landed(dataset)


def test_it_imports_csv_with_tests_as_json_text(dataset, tmp_path):
    path = tmp_path / "p.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["question", "answer", "domain", "tests", "source"])
        writer.writeheader()
        for r in RECORDS:
            writer.writerow({**r, "tests": json.dumps(r["tests"]) if "tests" in r else ""})
    job = run_import(dataset, path)
    assert job.status == "succeeded", job.error
    assert_three_prompts_landed(dataset)


def test_it_imports_parquet(dataset, tmp_path):
    rows = [{**r, "answer": str(r["answer"]), "domain": r.get("domain", ""), "tests": json.dumps(r.get("tests", []))}
            for r in RECORDS]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    job = run_import(dataset, tmp_path / "p.parquet")
    assert job.status == "succeeded", job.error
    assert_three_prompts_landed(dataset)


def test_it_imports_a_saved_datasets_folder_and_picks_the_split(dataset, tmp_path):
    rows = [{**r, "answer": str(r["answer"]), "domain": r.get("domain", ""), "tests": json.dumps(r.get("tests", []))}
            for r in RECORDS]
    splits = {"test": HFDataset.from_list(rows), "train": HFDataset.from_list(rows[:1])}
    DatasetDict(splits).save_to_disk(tmp_path / "hf")
    job = run_import(dataset, tmp_path / "hf", split="test")
    assert job.status == "succeeded", job.error
    assert_three_prompts_landed(dataset)


def test_a_saved_dataset_with_several_splits_needs_one_chosen(dataset, tmp_path):
    DatasetDict({"a": HFDataset.from_list([{"question": "q"}]), "b": HFDataset.from_list([{"question": "r"}])}
                ).save_to_disk(tmp_path / "hf")
    job = run_import(dataset, tmp_path / "hf")
    assert job.status == "failed" and "splits ['a', 'b']; choose one" in job.error


def test_the_field_mapping_renames_columns(dataset, tmp_path):
    path = write_jsonl(tmp_path / "gsm.jsonl", [{"problem": "Tom has 3 apples...", "solution": "#### 3", "id": 7}])
    job = run_import(dataset, path, question_field="problem", answer_field="solution", metadata_fields="id",
                     default_language="de")
    assert job.status == "succeeded", job.error
    p = Prompt.objects.get(dataset=dataset)
    assert (p.question, p.reference_answer, p.metadata, p.language) == (
        "Tom has 3 apples...", "#### 3", {"id": 7}, "de")


def test_duplicates_are_counted_and_skipped_never_doubled(dataset, tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", RECORDS + RECORDS[:1])
    first = run_import(dataset, path)
    assert first.result == {"records": 4, "inserted": 3, "skipped_duplicates": 1}
    second = run_import(dataset, path)
    assert second.result == {"records": 4, "inserted": 0, "skipped_duplicates": 4}
    assert Prompt.objects.filter(dataset=dataset).count() == 3


# ---- bad files: a clear, located error and nothing written ----------------------------

def assert_failed_with_nothing_written(job, *fragments):
    assert job.status == "failed"
    for fragment in fragments:
        assert fragment in job.error, job.error
    assert Prompt.objects.count() == 0


def test_wrong_encoding_names_the_line(dataset, tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"question": "ok"}\n{"question": "caf\xe9"}\n')
    assert_failed_with_nothing_written(run_import(dataset, path), "line 2: not valid UTF-8", "0xe9")


def test_a_non_json_line_is_named_and_nothing_lands(dataset, tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [RECORDS[0], "{broken", RECORDS[1], "[1, 2]"])
    job = run_import(dataset, path)
    assert_failed_with_nothing_written(job, "2 invalid record(s)", "line 2: not valid JSON",
                                       "line 4: expected a JSON object, found list")


def test_a_missing_required_field_names_line_and_field(dataset, tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [RECORDS[0], {"answer": "5"}, {"question": "  ", "answer": "1"},
                                              {"question": {"nested": 1}}])
    job = run_import(dataset, path)
    assert_failed_with_nothing_written(
        job, "line 2: field 'question': missing or empty", "line 3: field 'question': missing or empty",
        "line 4: field 'question': expected text, found dict",
    )


def test_a_ragged_csv_names_the_line(dataset, tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("question,answer\nWhat is 1+1?,2\nWhat is 2+2?,4,extra\nWhat is 3+3?\n")
    assert_failed_with_nothing_written(
        run_import(dataset, path), "line 3: expected 2 columns (as many as the header line), found 3",
        "line 4: expected 2 columns (as many as the header line), found 1",
    )


def test_a_file_that_is_not_parquet_is_refused(dataset, tmp_path):
    path = tmp_path / "p.parquet"
    path.write_text("not parquet")
    assert_failed_with_nothing_written(run_import(dataset, path), "not a readable Parquet file")


def test_bad_tests_field_is_named(dataset, tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"question": "q", "tests": "not json"}, {"question": "r", "tests": 5}])
    assert_failed_with_nothing_written(
        run_import(dataset, path), "line 1: field 'tests': not valid JSON", "line 2: field 'tests': expected a list",
    )


def test_a_huge_question_is_refused(dataset, tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"question": "x" * 300_000}])
    assert_failed_with_nothing_written(run_import(dataset, path), "line 1: field 'question': 300,000 characters")


def test_an_unknown_extension_needs_a_format(dataset, tmp_path):
    from django.core.exceptions import ValidationError

    path = tmp_path / "prompts.txt"
    path.write_text("{}")
    with pytest.raises(ValidationError) as exc:
        launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)})
    assert "cannot tell the format" in exc.value.message_dict["format"][0]


def test_the_command_line_runs_an_import_job_and_reports(tmp_path, capsys):
    from django.core.management import CommandError, call_command

    path = write_jsonl(tmp_path / "p.jsonl", RECORDS)
    call_command("import_prompts", "cli-set", str(path), "--create")
    out = json.loads(capsys.readouterr().out)
    assert out["inserted"] == 3 and Prompt.objects.filter(dataset__name="cli-set").count() == 3
    bad = write_jsonl(tmp_path / "bad.jsonl", [RECORDS[0], "{oops"])
    with pytest.raises(CommandError, match="line 2: not valid JSON"):
        call_command("import_prompts", "cli-set", str(bad))
    with pytest.raises(CommandError, match="No dataset 'missing'"):
        call_command("import_prompts", "missing", str(path))
    with pytest.raises(CommandError, match="path: .* does not exist"):
        call_command("import_prompts", "cli-set", str(tmp_path / "nope.jsonl"))
