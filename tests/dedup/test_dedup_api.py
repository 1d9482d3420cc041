"""De-duplication over the API, and the job through a real Celery worker."""

import pytest

from apps.datasets.models import DatasetVersion
from apps.datasets.versions import freeze_version
from apps.dedup.models import ClusterMember, DedupRun
from apps.jobs.models import Job
from tests.api.test_api import Api
from tests.conftest import wait_for_job
from tests.dedup.conftest import make_version, run_dedup

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api_as(client, users):
    from apps.api import tokens

    def as_role(role):
        _, text = tokens.issue_token(users[role], f"{role} token")
        return Api(client, text)

    return as_role


@pytest.mark.django_db(transaction=True)
def test_the_job_through_a_real_worker_then_decide_and_write_over_the_api(api_as, dataset, texts, celery_worker):
    version = make_version(dataset, [texts["base"], texts["other"], texts["close"], "Same.", "same", texts["far"]])
    admin = api_as("admin")
    created = admin.post("/jobs", {"kind": "deduplicate", "params": {"version": version.pk, "threshold": 0.8}})
    assert created.status_code == 201, created.content
    job = wait_for_job(Job.objects.get(pk=created.json()["id"]), timeout=120)
    assert job.status == Job.Status.SUCCEEDED, job.error
    run_id = job.result["dedup_run"]

    run = admin.get(f"/dedup/runs/{run_id}").json()
    assert (run["method"], run["scope"], run["cluster_count"], run["duplicate_count"]) == ("near", "within", 2, 2)
    assert run["decisions"]["undecided"] == 4
    clusters = admin.get(f"/dedup/runs/{run_id}/clusters").json()
    assert clusters["total"] == 2 and clusters["next"] is None
    near, exact = clusters["items"]
    assert (near["kind"], exact["kind"]) == ("near", "exact")
    assert [m["position"] for m in near["members"]] == [0, 2] and near["members"][0]["is_representative"]
    assert near["members"][1]["text"].startswith("Solve it.")
    assert [c["kind"] for c in admin.get(f"/dedup/runs/{run_id}/clusters", {"kind": "exact"}).json()["items"]] == [
        "exact"]

    reviewer = api_as("reviewer")
    decided = reviewer.post(f"/dedup/runs/{run_id}/decide", {
        "clusters": [{"id": exact["id"], "keep": "all"}],
        "members": [{"id": near["members"][1]["id"], "keep": False}]})
    assert decided.status_code == 200, decided.content
    assert decided.json()["decisions"] == {"kept": 3, "dropped": 1, "undecided": 0, "clusters_undecided": 0,
                                                "clusters_rule": 0, "clusters_person": 2}
    written = reviewer.post(f"/dedup/runs/{run_id}/write", {"note": "over the API"})
    assert written.status_code == 201, written.content
    clean = written.json()
    assert clean["example_count"] == 5 and clean["provenance"]["dropped_near"] == 1
    assert "1 of 6 examples dropped" in clean["note"]
    assert admin.get(f"/dedup/runs/{run_id}").json()["output_version"] == clean["id"]


def test_permissions(api_as, dataset):
    version = make_version(dataset, ["Same.", "same"])
    run = run_dedup(version, method="exact")
    member = ClusterMember.objects.get(cluster__run=run, is_representative=False)
    viewer, annotator = api_as("viewer"), api_as("annotator")
    assert viewer.get(f"/dedup/runs/{run.pk}").status_code == 200
    assert viewer.get(f"/dedup/runs/{run.pk}/clusters").status_code == 200
    refused = annotator.post(f"/dedup/runs/{run.pk}/decide", {"apply_rule": True})
    assert refused.status_code == 403 and refused.json()["permission"] == "dedup.decide_duplicates"
    assert viewer.post(f"/dedup/runs/{run.pk}/write").status_code == 403
    refused = api_as("reviewer").post("/jobs", {"kind": "deduplicate", "params": {"version": version.pk}})
    assert refused.status_code == 403 and refused.json()["permission"] == "jobs.launch_job"
    assert api_as("stranger").get(f"/dedup/runs/{run.pk}").status_code == 403
    assert ClusterMember.objects.get(pk=member.pk).keep is None
    assert api_as("admin").get("/dedup/runs/999999").status_code == 404


def test_bad_input_is_a_422_naming_the_field(api_as, dataset):
    admin = api_as("admin")
    empty = freeze_version(dataset, [])
    refused = admin.post("/jobs", {"kind": "deduplicate", "params": {"version": empty.pk}})
    assert refused.status_code == 422
    (error,) = refused.json()["detail"]
    assert error["loc"] == ["body", "params", "version"] and "holds no examples" in error["msg"]
    version = make_version(dataset, ["Same.", "same", "other"])
    refused = admin.post("/jobs", {"kind": "deduplicate", "params": {"version": version.pk, "threshold": 1.5}})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"][-1] == "threshold"

    run = run_dedup(version, method="exact")
    other = run_dedup(make_version(dataset, ["x", "X."]), method="exact")
    foreign = other.clusters.get()
    refused = admin.post(f"/dedup/runs/{run.pk}/decide", {"clusters": [{"id": foreign.pk, "keep": "all"}]})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "clusters"]
    refused = admin.post(f"/dedup/runs/{run.pk}/decide", {"clusters": [{"id": run.clusters.get().pk, "keep": "x"}]})
    assert refused.status_code == 422
    refused = admin.post(f"/dedup/runs/{run.pk}/write", {})
    assert refused.status_code == 422 and "No example is marked drop" in refused.json()["detail"][0]["msg"]
    assert DatasetVersion.objects.filter(dataset=dataset).count() == 3  # nothing written


def test_across_versions_over_the_api_refuses_deciding_an_earlier_example(api_as, dataset):
    v1 = make_version(dataset, ["Same."])
    v2 = make_version(dataset, ["same", "new"])
    run = run_dedup(v2, against=[v1.pk], method="exact")
    earlier = ClusterMember.objects.get(cluster__run=run, version=v1)
    admin = api_as("admin")
    refused = admin.post(f"/dedup/runs/{run.pk}/decide", {"members": [{"id": earlier.pk, "keep": False}]})
    assert refused.status_code == 422 and "earlier version" in refused.json()["detail"][0]["msg"]
    applied = admin.post(f"/dedup/runs/{run.pk}/decide", {"apply_rule": True}).json()
    assert applied["against"] == [v1.pk] and applied["decisions"]["dropped"] == 1
    assert DedupRun.objects.get().scope == "across"
