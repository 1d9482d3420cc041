import psycopg
import pytest
from django.db import connection, transaction

from apps.core.bulk import bulk_insert
from apps.datasets.models import Prompt
from apps.jobs.models import Job
from apps.rollouts.models import Rollout

pytestmark = pytest.mark.django_db


def rollout_rows(job, prompts, samples=2, text="x"):
    return [
        {"job_id": job.pk, "prompt_id": p.pk, "sample_index": s, "completion": f"{text} {p.pk}/{s}",
         "rewards": {"accuracy": {"value": 1.0, "details": {"extracted": "4"}}}, "total_reward": 1.0}
        for p in prompts for s in range(samples)
    ]


@pytest.fixture
def prompts(dataset):
    rows = [{"dataset_id": dataset.pk, "question": f"q{i}", "content_hash": f"h{i}"} for i in range(5)]
    bulk_insert(Prompt, rows)
    return list(Prompt.objects.order_by("pk"))


def test_it_goes_through_copy_on_postgres():
    assert connection.vendor == "postgresql"  # the fast path is what these tests exercise


def test_it_inserts_rows_with_defaults_and_json(prompts):
    job = Job.objects.create(kind="generate")
    assert bulk_insert(Rollout, rollout_rows(job, prompts)) == 10
    r = Rollout.objects.get(job=job, prompt=prompts[0], sample_index=1)
    assert r.rewards["accuracy"]["details"] == {"extracted": "4"}
    assert (r.step, r.finish_reason, r.has_reflection, r.created_at is not None) == (0, "stop", False, True)
    assert prompts[0].tests == [] and prompts[0].metadata == {} and prompts[0].domain == "math"


def test_a_retried_write_is_idempotent(prompts):
    job = Job.objects.create(kind="generate")
    assert bulk_insert(Rollout, rollout_rows(job, prompts[:2])) == 4
    # The retry overlaps the first write: only the new rows land, none twice.
    assert bulk_insert(Rollout, rollout_rows(job, prompts)) == 6
    assert Rollout.objects.filter(job=job).count() == 10
    assert bulk_insert(Rollout, rollout_rows(job, prompts)) == 0


def test_hostile_text_with_nul_bytes_is_stored(prompts):
    job = Job.objects.create(kind="generate")
    row = rollout_rows(job, prompts[:1], samples=1, text="<script>alert(1)</script>\x00tail")[0]
    row["rewards"] = {"format": {"value": 0.0, "details": {"raw": "a\x00b", "literal": "\\u0000 stays"}}}
    assert bulk_insert(Rollout, [row]) == 1
    stored = Rollout.objects.get(job=job)
    assert stored.completion.startswith("<script>alert(1)</script>\ufffdtail")
    assert stored.rewards["format"]["details"] == {"raw": "a\ufffdb", "literal": "\\u0000 stays"}


def test_all_batches_land_or_none(dataset):
    rows = [{"dataset_id": dataset.pk, "question": f"q{i}", "content_hash": f"h{i}"} for i in range(10)]
    rows[7]["question"] = None  # breaks NOT NULL in the third batch, after two landed
    with pytest.raises(psycopg.errors.NotNullViolation):
        with transaction.atomic():
            bulk_insert(Prompt, rows, batch_size=3)
    assert Prompt.objects.count() == 0


def test_a_row_without_a_required_value_is_refused(dataset):
    with pytest.raises(ValueError, match="question"):
        bulk_insert(Prompt, [{"dataset_id": dataset.pk, "content_hash": "h"}])


def test_values_not_in_their_columns_type_are_parsed_or_refused_never_mangled(prompts):
    job = Job.objects.create(kind="generate")
    row = rollout_rows(job, prompts[:1], samples=1)[0]
    assert bulk_insert(Rollout, [{**row, "step": "3"}]) == 1  # text, parsed by the server as INSERT would
    assert Rollout.objects.get(job=job).step == 3
    with pytest.raises(Exception, match="out of range"):  # binary COPY would have stored 5
        with transaction.atomic():
            bulk_insert(Rollout, [{**row, "step": 2**32 + 5, "sample_index": 1}])
    assert Rollout.objects.filter(job=job).count() == 1
