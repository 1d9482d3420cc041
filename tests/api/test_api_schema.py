"""schemathesis against the OpenAPI document: every operation, with generated input, never gets a 5xx.

Each generated request is sent twice when it has path parameters: as generated (mostly 404s) and with
the path pointing at real objects (a dataset, versions, a job, an annotation the token's user owns), so
that generated bodies and queries reach the code behind the lookups. Derandomized and without the
Hypothesis database, so a run is reproducible; a failure prints the request as a curl command.
"""

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, settings

from apps.api import tokens
from apps.curation.models import Annotation, ReviewItem, ReviewQueue
from apps.datasets.models import Dataset, Example
from apps.datasets.versions import freeze_version
from apps.jobs import launching
from apps.jobs.models import Job
from r1studio.wsgi import application
from tests.rollout_factory import add_prompt, add_rollouts, solved

# Small enough for the suite (about a minute); API_FUZZ_EXAMPLES=200 for a deeper run.
EXAMPLES_PER_OPERATION = int(os.environ.get("API_FUZZ_EXAMPLES", "10"))


# Loaded when the module is collected (the schema needs no database). schemathesis' lazy loader,
# schemathesis.pytest.from_fixture, fails on pytest 9 (it sets Function._nodeid, which pytest 9 lacks).
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", application)


@pytest.fixture(autouse=True)
def keep_the_test_connection():
    """Called straight through WSGI, Django would close the test's database connection after each request
    (it is inside the test's transaction, so not reusable); Django's own test client stops that the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(users, dataset):
    """Objects for the path parameters to name, and an admin token."""
    admin = users["admin"]
    examples = [Example.objects.create(dataset=dataset, messages=[{"role": "user", "content": f"q{i}"},
                                                                  {"role": "assistant", "content": f"a{i}"}])
                for i in range(4)]
    first = freeze_version(dataset, examples[:3], user=admin)
    second = freeze_version(dataset, examples[1:], user=admin)
    job = Job.objects.create(kind="generate", status="succeeded", created_by=admin)
    rollout = add_rollouts(job, add_prompt(dataset, "How many clips?"), [solved(), solved("71")])[0]
    item = ReviewItem.objects.create(queue=ReviewQueue.objects.create(name="fuzz"), rollout=rollout, position=1)
    annotation = Annotation.objects.create(item=item, annotator=admin)
    dedup_run = launching.run_here("deduplicate", {"version": second.pk, "method": "exact"}).dedup_run
    benchmark = Dataset.objects.create(name="fuzz-bench")
    add_prompt(benchmark, "q1")
    check = launching.run_here("decontaminate", {"version": second.pk, "benchmarks": [benchmark.pk], "n": 8})
    _, token = tokens.issue_token(admin, "schemathesis")
    real = {"name": dataset.name, "version_id": first.pk, "a": first.pk, "b": second.pk, "job_id": job.pk,
            "annotation_id": annotation.pk, "run_id": dedup_run.pk, "check_id": check.pk}
    return {"Authorization": f"Bearer {token}"}, real


def send(case, headers):
    response = case.call(headers=headers)
    assert response.status_code < 500, (
        f"{response.status_code} from {case.method} {case.formatted_path}:\n{case.as_curl_command(headers=headers)}\n"
        f"{response.text[:2000]}"
    )


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
def test_no_generated_request_gets_a_server_error(case, world):
    headers, real = world
    send(case, headers)
    if case.path_parameters:
        case.path_parameters = {key: real.get(key, value) for key, value in case.path_parameters.items()}
        send(case, headers)
    if isinstance(case.body, dict) and "dataset" in case.body:  # the ingest form names a dataset
        case.body = {**case.body, "dataset": real["name"]}
        send(case, headers)
