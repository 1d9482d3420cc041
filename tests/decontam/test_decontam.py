"""Decontamination end to end: the job (through a real worker and in process), the matches and their
spans, decisions one by one and in bulk, the clean version and what it records, bad input (an empty
version, a benchmark file with broken lines, bad decisions), the pages and the API with permissions."""

import pytest
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.urls import reverse

from apps.core.models import AuditEvent
from apps.datasets.models import Dataset, DatasetVersion, DatasetVersionExample, Prompt
from apps.datasets.versions import freeze_version
from apps.decontam import checking
from apps.decontam.models import DecontamCheck, Match
from apps.jobs import launching
from apps.jobs.models import Job
from tests.api.test_api import api_as  # noqa: F401 (fixture)
from tests.conftest import wait_for_job, write_jsonl
from tests.decontam.factory import EXAMPLES, GSM, MATH, make_benchmarks, make_version, run_check

pytestmark = pytest.mark.django_db


@pytest.fixture
def benchmarks(db):
    return make_benchmarks()


@pytest.fixture
def version(db):
    return make_version()


@pytest.fixture
def check(version, benchmarks):
    job = run_check(version, benchmarks, n=10)
    return DecontamCheck.objects.get(pk=job.pk)


def matches_of(check):
    return {(m.position, m.part, m.benchmark_prompt.question[:20]): m for m in check.matches.select_related(
        "benchmark_prompt")}


# ----- the job


@pytest.mark.django_db(transaction=True)
def test_the_job_runs_on_the_worker_and_finds_the_contaminated_examples(celery_worker, version, benchmarks):
    job = launching.launch("decontaminate", {"version": version.pk, "benchmarks": [b.pk for b in benchmarks]})
    assert job.queue == "cpu"
    wait_for_job(job, timeout=90)
    assert job.status == Job.Status.SUCCEEDED, job.error
    check = DecontamCheck.objects.get(pk=job.pk)
    assert (check.n, check.examples_checked, check.matched_examples, check.match_count) == (10, 5, 2, 2)
    assert set(check.benchmarks.values_list("name", flat=True)) == {"gsm8k-test", "math500"}
    assert job.result["matches"] == 2 and job.result["check"] == check.pk
    found = matches_of(check)
    assert set(found) == {(1, "prompt", GSM[:20]), (3, "answer", MATH[:20])}
    assert all(m.decision == Match.Decision.PENDING for m in found.values())


def test_spans_point_at_the_overlap_on_both_sides(check):
    gsm = check.matches.get(position=1)
    text = checking.part_text(gsm.example.messages, "prompt")
    assert [text[s:e] for s, e in gsm.example_spans] == [
        "NATALIA sold clips to forty-eight of her friends in April, and then she sold half as many clips in May... "
        "how many clips did Natalia sell altogether in April and May"]
    question = gsm.benchmark_prompt.question
    assert [question[s:e] for s, e in gsm.benchmark_spans] == [question.rstrip("?")]
    assert gsm.shared_ngrams == 32 - 10 + 1  # the 32 words of the question, in one run

    math = check.matches.get(position=3)
    answer = checking.part_text(math.example.messages, "answer")
    [(start, end)] = math.example_spans
    assert answer[start:end].startswith("find the number of ordered pairs")
    assert answer[start:end].endswith("exactly six")


def test_n_min_shared_and_parts_change_what_matches(version, benchmarks):
    prompt_only = DecontamCheck.objects.get(pk=run_check(version, benchmarks, parts="prompt").pk)
    assert list(prompt_only.matches.values_list("position", "part")) == [(1, "prompt")]
    strict = DecontamCheck.objects.get(pk=run_check(version, benchmarks, min_shared=16).pk)
    assert list(strict.matches.values_list("position", flat=True)) == [1]  # the MATH quote shares 15 10-grams
    assert strict.matches.get().shared_ngrams == 23
    long_grams = DecontamCheck.objects.get(pk=run_check(version, benchmarks, n=25).pk)
    assert list(long_grams.matches.values_list("position", "shared_ngrams")) == [(1, 32 - 25 + 1)]


def test_a_retried_check_starts_over(check):
    job = check.job
    check.matches.update(decision=Match.Decision.CONFIRMED)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.FAILED)
    job.refresh_from_db()
    assert launching.retry(job)
    from apps.jobs.runner import execute

    execute(job.pk, worker="test")
    assert check.matches.count() == 2
    assert set(check.matches.values_list("decision", flat=True)) == {Match.Decision.PENDING}


# ----- bad input


def test_an_empty_version_is_refused_with_the_field_named(benchmarks):
    empty = freeze_version(Dataset.objects.create(name="empty"), [])
    with pytest.raises(ValidationError) as refused:
        launching.launch("decontaminate", {"version": empty.pk, "benchmarks": [benchmarks[0].pk]})
    assert refused.value.message_dict["version"] == ["empty v1 has no examples; there is nothing to check"]
    with pytest.raises(CommandError, match="version: empty v1 has no examples"):
        run_check(empty, benchmarks)
    assert not Job.objects.filter(kind="decontaminate").exists()


def test_an_empty_version_on_the_page_and_the_api(admin_client, benchmarks, api_as):  # noqa: F811
    empty = freeze_version(Dataset.objects.create(name="empty"), [])
    response = admin_client.post(reverse("decontam_new"), {"version": empty.pk, "benchmarks": [benchmarks[0].pk],
                                                           "n": 10, "min_shared": 1, "parts": "both"})
    assert response.status_code == 400
    assert "has no examples; there is nothing to check" in response.content.decode()
    response = api_as("admin").post("/jobs", {"kind": "decontaminate", "params": {
        "version": empty.pk, "benchmarks": [benchmarks[0].pk]}})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"][-1] == "version" and "no examples" in error["msg"]


def test_a_benchmark_file_with_broken_lines_lands_nothing_and_cannot_be_checked_against(version, tmp_path):
    """The benchmark goes in through the prompt import: a broken line is named, nothing lands, and the
    decontamination form then refuses the empty benchmark rather than reporting it clean."""
    benchmark = Dataset.objects.create(name="aime-2024")
    path = write_jsonl(tmp_path / "aime.jsonl", [{"question": MATH}, "{broken json", {"question": ""}])
    job = launching.launch("import_prompts", {"dataset": benchmark.pk, "path": str(path)}, enqueue=False)
    from apps.jobs.runner import execute

    execute(job.pk, worker="test")
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "line 2: not valid JSON" in job.error and "line 3: field 'question'" in job.error
    assert not Prompt.objects.filter(dataset=benchmark).exists()
    with pytest.raises(ValidationError) as refused:
        launching.launch("decontaminate", {"version": version.pk, "benchmarks": [benchmark.pk]})
    [message] = refused.value.message_dict["benchmarks"]
    assert message == "aime-2024 has no prompts: import the benchmark's prompts first"


def test_bad_parameters_name_the_field(version, benchmarks):
    for params, field in (({"n": 2}, "n"), ({"min_shared": 0}, "min_shared"), ({"parts": "system"}, "parts"),
                          ({"benchmarks": [999999]}, "benchmarks"), ({"version": 999999}, "version")):
        with pytest.raises(ValidationError) as refused:
            launching.launch("decontaminate", {"version": version.pk, "benchmarks": [benchmarks[0].pk]} | params)
        assert field in refused.value.message_dict


# ----- decisions and the clean version


def test_decisions_one_by_one_and_in_bulk(check, users):
    reviewer = users["reviewer"]
    gsm, math = check.matches.get(position=1), check.matches.get(position=3)
    assert checking.decide(check, [gsm.pk], "confirmed", reviewer) == 1
    gsm.refresh_from_db()
    assert (gsm.decision, gsm.decided_by, gsm.decided_at is not None) == ("confirmed", reviewer, True)
    # "Confirm all with ≥ k": only pending matches with enough shared n-grams; the reviewer's choice stays.
    assert checking.decide_at_least(check, 16, "dismissed", reviewer) == 0  # gsm (23) is decided, math has 15
    assert checking.decide_at_least(check, 15, "dismissed", reviewer) == 1
    math.refresh_from_db()
    assert math.decision == "dismissed"
    assert checking.decide(check, [gsm.pk, math.pk], "pending", reviewer) == 2
    assert set(check.matches.values_list("decision", "decided_by")) == {("pending", None)}
    with pytest.raises(ValueError, match="decision must be"):
        checking.decide(check, [gsm.pk], "maybe", reviewer)
    events = AuditEvent.objects.filter(action="decontam.decide", target_id=str(check.pk))
    assert events.count() == 4
    assert events.filter(details__pending_with_at_least=15, details__matches=1).exists()


def test_the_clean_version_leaves_out_exactly_the_confirmed_examples_and_says_why(check, users):
    reviewer = users["reviewer"]
    gsm, math = check.matches.get(position=1), check.matches.get(position=3)
    checking.decide(check, [gsm.pk], "confirmed", reviewer)
    checking.decide(check, [math.pk], "dismissed", reviewer)
    clean = checking.write_clean_version(check, reviewer, note="before SFT")
    source = check.version
    kept = list(DatasetVersionExample.objects.filter(version=clean).order_by("position")
                .values_list("example_id", flat=True))
    expected = list(DatasetVersionExample.objects.filter(version=source).exclude(position=1).order_by("position")
                    .values_list("example_id", flat=True))
    assert kept == expected and clean.example_count == len(EXAMPLES) - 1
    assert clean.dataset == source.dataset and clean.number == source.number + 1
    provenance = clean.provenance
    assert provenance["decontam_check"] == check.pk and provenance["source_version"] == source.pk
    assert provenance["benchmarks"] == ["gsm8k-test", "math500"] and provenance["n"] == 10
    assert provenance["removed_count"] == 1 and provenance["pending_matches_kept"] == 0
    [removed] = provenance["removed"]
    assert removed == {"example": gsm.example_id, "position": 1, "matches": [
        {"benchmark": "gsm8k-test", "benchmark_prompt": gsm.benchmark_prompt_id, "part": "prompt",
         "shared_ngrams": 23, "confirmed_by": reviewer.username}]}
    assert "a reviewer confirmed the match" in provenance["reason"]
    assert clean.note.startswith("before SFT\n\n")
    assert "without 1 example(s) with confirmed 10-gram matches against gsm8k-test, math500" in clean.note
    check.refresh_from_db()
    assert (check.output_version, check.removed_count, check.written_by) == (clean, 1, reviewer)
    event = AuditEvent.objects.get(action="decontam.write")
    assert event.details["removed"] == 1 and event.details["version"] == clean.pk
    assert event.details["removed_examples"] == [gsm.example_id]
    assert AuditEvent.objects.filter(action="version.freeze", target_id=str(clean.pk)).exists()


def test_pending_matches_stay_in_and_are_counted(check, users):
    clean = checking.write_clean_version(check, users["reviewer"])
    assert clean.example_count == len(EXAMPLES)
    assert clean.provenance["removed_count"] == 0 and clean.provenance["pending_matches_kept"] == 2
    assert "2 match(es) were still pending" in clean.note


def test_a_clean_version_needs_a_finished_check_and_something_left(users, benchmarks):
    version = make_version(name="all-contaminated", examples=[(GSM, "72")])
    check = DecontamCheck.objects.get(pk=run_check(version, benchmarks).pk)
    checking.decide_at_least(check, 1, "confirmed", users["reviewer"])
    with pytest.raises(ValueError, match="a clean version would be empty"):
        checking.write_clean_version(check, users["reviewer"])
    Job.objects.filter(pk=check.pk).update(status=Job.Status.RUNNING)
    check = DecontamCheck.objects.select_related("job").get(pk=check.pk)
    with pytest.raises(ValueError, match="job is running"):
        checking.write_clean_version(check, users["reviewer"])
    assert DatasetVersion.objects.filter(dataset=version.dataset).count() == 1


# ----- pages


def test_the_check_page_shows_each_match_side_by_side_escaped(admin_client, check):
    page = admin_client.get(reverse("decontam_check", args=[check.pk])).content.decode()
    assert page.count('class="match pending"') == 2
    assert "<mark>NATALIA sold clips to forty-eight" in page
    assert "<mark>Natalia sold clips to forty eight" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert "gsm8k-test prompt #" in page and "math500 prompt #" in page
    version_page = admin_client.get(reverse("version_detail", args=[check.version.pk])).content.decode()
    assert f'href="/decontam/new?version={check.version.pk}"' in version_page
    launch_page = admin_client.get(reverse("decontam_new"), {"version": check.version.pk}).content.decode()
    assert f'<option value="{check.version.pk}" selected>' in launch_page and 'id="import-benchmark"' in launch_page
    job_page = admin_client.get(reverse("job_detail", args=[check.pk])).content.decode()
    assert f'href="/decontam/{check.pk}/"' in job_page and "gsm8k-test" in job_page
    assert admin_client.get(reverse("job_new", args=["decontaminate"]))["Location"] == reverse("decontam_new")


def test_deciding_on_the_page_one_by_one_with_htmx_and_in_bulk(client, users, check):
    client.force_login(users["reviewer"])
    gsm, math = check.matches.get(position=1), check.matches.get(position=3)
    response = client.post(reverse("decontam_match_decide", args=[gsm.pk]), {"decision": "confirmed"},
                           headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert 'class="match confirmed"' in response.content.decode() and "<html" not in response.content.decode()
    response = client.post(reverse("decontam_decide", args=[check.pk]), {"decision": "dismissed",
                                                                        "match": [str(math.pk)]})
    assert response.status_code == 302
    assert dict(check.matches.values_list("pk", "decision")) == {gsm.pk: "confirmed", math.pk: "dismissed"}
    response = client.post(reverse("decontam_decide", args=[check.pk]), {"decision": "confirmed", "min_shared": "x"})
    assert response.status_code == 400 and "min_shared" in response.content.decode()
    response = client.post(reverse("decontam_decide", args=[check.pk]), {"decision": "confirmed"})
    assert response.status_code == 400 and "tick at least one match" in response.content.decode()
    response = client.post(reverse("decontam_write", args=[check.pk]), {"note": ""})
    clean = DecontamCheck.objects.get(pk=check.pk).output_version
    assert response.status_code == 302 and response["Location"] == reverse("version_detail", args=[clean.pk])
    assert clean.example_count == len(EXAMPLES) - 1


def test_pages_ask_for_the_permissions(client, users, check):
    match = check.matches.first()
    client.force_login(users["viewer"])
    assert client.get(reverse("decontam_list")).status_code == 200
    page = client.get(reverse("decontam_check", args=[check.pk])).content.decode()
    assert 'class="match pending"' in page and 'value="confirmed"' not in page  # sees, cannot decide
    assert client.post(reverse("decontam_match_decide", args=[match.pk]), {"decision": "confirmed"}).status_code == 403
    assert client.post(reverse("decontam_write", args=[check.pk])).status_code == 403
    assert client.get(reverse("decontam_new")).status_code == 403
    client.force_login(users["annotator"])
    assert client.post(reverse("decontam_decide", args=[check.pk]),
                       {"decision": "confirmed", "min_shared": "1"}).status_code == 403
    assert set(check.matches.values_list("decision", flat=True)) == {"pending"}


def test_the_page_of_a_check_still_running_polls_and_a_bad_filter_is_a_400(admin_client, version, benchmarks):
    job = launching.launch("decontaminate", {"version": version.pk, "benchmarks": [benchmarks[0].pk]},
                           enqueue=False)
    page = admin_client.get(reverse("decontam_check", args=[job.pk])).content.decode()
    assert "is queued" in page and 'hx-trigger="every 1s"' in page
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED)
    polled = admin_client.get(reverse("decontam_check", args=[job.pk]), headers={"HX-Request": "true"})
    assert polled["HX-Refresh"] == "true"
    check = DecontamCheck.objects.get(pk=run_check(version, benchmarks).pk)
    response = admin_client.get(reverse("decontam_check", args=[check.pk]), {"decision": "nope"})
    assert response.status_code == 400 and "decision" in response.content.decode()


# ----- the API


def test_the_api_lists_decides_and_writes_the_clean_version(api_as, check):  # noqa: F811
    reviewer = api_as("reviewer")
    summary = reviewer.get(f"/decontam/{check.pk}").json()
    assert (summary["match_count"], summary["pending"], summary["job_status"]) == (2, 2, "succeeded")
    listed = reviewer.get(f"/decontam/{check.pk}/matches").json()
    assert listed["total"] == 2 and [m["shared_ngrams"] for m in listed["items"]] == [23, 15]  # most shared first
    gsm = listed["items"][0]
    assert gsm["benchmark"] == "gsm8k-test" and gsm["part"] == "prompt"
    assert gsm["example_overlap"][0].startswith("NATALIA sold clips") and gsm["benchmark_overlap"][0].startswith(
        "Natalia sold clips")
    decided = reviewer.post(f"/decontam/{check.pk}/decisions", {"decision": "confirmed", "match_ids": [gsm["id"]]})
    assert decided.status_code == 200 and decided.json()["changed"] == 1
    assert decided.json()["check"]["confirmed_examples"] == 1
    dismissed = reviewer.post(f"/decontam/{check.pk}/decisions", {"decision": "dismissed", "min_shared": 1})
    assert dismissed.json()["changed"] == 1
    assert reviewer.get(f"/decontam/{check.pk}/matches", {"decision": "dismissed"}).json()["total"] == 1
    written = reviewer.post(f"/decontam/{check.pk}/clean-version", {"note": "api"})
    assert written.status_code == 201
    body = written.json()
    assert body["example_count"] == len(EXAMPLES) - 1 and body["provenance"]["removed_count"] == 1
    assert AuditEvent.objects.filter(action="decontam.write", via="api").exists()


def test_the_api_refuses_bad_decisions_and_missing_permissions(api_as, check, version, benchmarks):  # noqa: F811
    other = DecontamCheck.objects.get(pk=run_check(version, benchmarks).pk)
    reviewer = api_as("reviewer")
    foreign = other.matches.first().pk
    response = reviewer.post(f"/decontam/{check.pk}/decisions", {"decision": "confirmed", "match_ids": [foreign]})
    assert response.status_code == 422 and f"Not matches of check {check.pk}: {foreign}" in str(response.json())
    response = reviewer.post(f"/decontam/{check.pk}/decisions", {"decision": "confirmed"})
    assert response.status_code == 422 and "exactly one" in str(response.json())
    response = reviewer.post(f"/decontam/{check.pk}/decisions", {"decision": "pending", "min_shared": 1})
    assert response.status_code == 422
    response = reviewer.post(f"/decontam/{check.pk}/decisions", {"decision": "maybe", "match_ids": [foreign]})
    assert response.status_code == 422
    assert reviewer.get("/decontam/999999").status_code == 404

    viewer = api_as("viewer")
    assert viewer.get(f"/decontam/{check.pk}/matches").status_code == 200
    response = viewer.post(f"/decontam/{check.pk}/decisions", {"decision": "confirmed", "min_shared": 1})
    assert response.status_code == 403 and response.json()["permission"] == "decontam.decide_match"
    response = api_as("annotator").post(f"/decontam/{check.pk}/clean-version", {})
    assert response.status_code == 403 and response.json()["permission"] == "datasets.freeze_version"
    assert api_as("stranger").get(f"/decontam/{check.pk}").status_code == 403
    assert set(Match.objects.values_list("decision", flat=True)) == {"pending"}

    Job.objects.filter(pk=check.pk).update(status=Job.Status.RUNNING)
    response = reviewer.post(f"/decontam/{check.pk}/clean-version", {})
    assert response.status_code == 409 and "job is running" in response.json()["detail"]


def test_the_api_launches_a_check_through_post_jobs(api_as, version, benchmarks):  # noqa: F811
    response = api_as("admin").post("/jobs", {"kind": "decontaminate", "params": {
        "version": version.pk, "benchmarks": [b.pk for b in benchmarks], "n": 13}})
    assert response.status_code in (200, 201, 202), response.json()
    job = Job.objects.get(kind="decontaminate")
    assert job.params["n"] == 13 and job.params["benchmarks"] == [b.pk for b in benchmarks]
    assert api_as("reviewer").post("/jobs", {"kind": "decontaminate", "params": {
        "version": version.pk, "benchmarks": [benchmarks[0].pk]}}).status_code == 403
