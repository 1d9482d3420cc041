"""De-duplication of dataset versions: the job, decisions, the clean version, the pages and the GRPO group flag."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from apps.core.models import AuditEvent
from apps.datasets.models import DatasetVersion, DatasetVersionExample
from apps.datasets.versions import freeze_version
from apps.dedup import decisions
from apps.dedup.models import ClusterMember, DedupRun
from apps.jobs import launching
from apps.jobs.models import Job
from tests.conftest import make_user
from tests.dedup.conftest import make_version, run_dedup
from tests.rollout_factory import add_prompt, add_rollouts

pytestmark = pytest.mark.django_db


def clusters_of(run: DedupRun) -> list[list[tuple[int, int]]]:
    """Each cluster's members as (version number, position), representative first."""
    return [[(m.version.number, m.position) for m in c.members.select_related("version")] for c in run.clusters.all()]


def test_exact_duplicates_are_case_spacing_and_punctuation_variants(dataset):
    version = make_version(dataset, ["The answer is 72.", "the answer is 72", "Different: 71.",
                                     "THE  ANSWER\nis 72 !", "The answer is 73."])
    run = run_dedup(version, method="exact")
    assert clusters_of(run) == [[(1, 0), (1, 1), (1, 3)]]
    (cluster,) = run.clusters.all()
    assert cluster.kind == "exact" and cluster.size == 3 and cluster.decision == "undecided"
    assert (run.examples_checked, run.cluster_count, run.duplicate_count) == (5, 1, 2)
    assert run.job.result == {"dedup_run": run.pk, "examples": 5, "clusters": 1, "duplicates": 2}
    assert set(ClusterMember.objects.values_list("keep", flat=True)) == {None}  # nothing decided yet


def test_a_near_duplicate_above_the_threshold_is_found_and_one_below_is_not(dataset, texts):
    version = make_version(dataset, [texts["base"], texts["other"], texts["close"], texts["far"]])
    run = run_dedup(version, method="near", threshold=0.8)
    assert clusters_of(run) == [[(1, 0), (1, 2)]]
    representative, near = run.clusters.get().members.all()
    assert representative.is_representative and representative.similarity == 1.0
    assert 0.8 <= near.similarity < 1.0 and run.clusters.get().kind == "near"
    assert run_dedup(version, method="exact").cluster_count == 0


def test_the_rule_chooses_the_representative(dataset):
    version = make_version(dataset, ["The sum is 4.", "the sum is 4 !!!", "x"])
    for rule, position in (("first", 0), ("shortest", 0), ("longest", 1)):
        run = run_dedup(version, method="exact", rule=rule)
        assert run.clusters.get().members.get(is_representative=True).position == position


def test_across_versions_an_example_already_there_is_the_duplicate(dataset, texts):
    v1 = make_version(dataset, [texts["base"], texts["other"]])
    v2 = make_version(dataset, [texts["third"], texts["base"].upper(), texts["other"], texts["close"],
                                texts["third"] + "!"])
    run = run_dedup(v2, against=[v1.pk], rule="shortest")
    assert run.scope == "across" and list(run.against.all()) == [v1]
    # base: the earlier one represents its case variant and its near copy; other: the same example in both.
    # third and its copy are both new: a within-version question, not this run's.
    assert clusters_of(run) == [[(1, 0), (2, 1), (2, 3)], [(1, 1), (2, 2)]]
    assert run.duplicate_count == 3
    decisions.apply_rule(run)
    assert set(ClusterMember.objects.filter(version=v1).values_list("keep", flat=True)) == {None}
    clean = decisions.write_clean_version(run)
    assert _positions(clean, v2) == [0, 4]


def _positions(clean: DatasetVersion, source: DatasetVersion) -> list[int]:
    ids = list(DatasetVersionExample.objects.filter(version=clean).order_by("position")
               .values_list("example_id", flat=True))
    at = dict(DatasetVersionExample.objects.filter(version=source).values_list("example_id", "position"))
    return [at[i] for i in ids]


def test_rule_and_person_decide_and_the_clean_version_leaves_out_exactly_the_dropped(dataset, users):
    answers = ["Answer A.", "answer a", "ANSWER A!", "Answer B.", "answer b", "Answer C.", "answer c", "Unique."]
    version = make_version(dataset, answers)
    run = run_dedup(version, method="exact")
    a, b, c = run.clusters.all()
    reviewer = users["reviewer"]
    decisions.decide_cluster(b, "all", user=reviewer)  # a person: not duplicates after all
    member = c.members.get(position=6)
    decisions.decide_member(member, keep=True, user=reviewer)
    decisions.decide_member(c.members.get(position=5), keep=False, user=reviewer)  # keep the other one instead
    assert decisions.apply_rule(run, user=reviewer) == 1  # only a was undecided
    dropped = set(ClusterMember.objects.filter(cluster__run=run, keep=False).values_list("position", flat=True))
    assert dropped == {1, 2, 5}
    assert decisions.decision_counts(run) == {"kept": 4, "dropped": 3, "undecided": 0, "clusters_undecided": 0,
                                              "clusters_rule": 1, "clusters_person": 2}
    clean = decisions.write_clean_version(run, user=reviewer, note="before SFT")
    assert _positions(clean, version) == [0, 3, 4, 6, 7]
    assert clean.dataset == dataset and clean.number == 2
    assert "3 of 8 examples dropped" in clean.note and "3 exact and 0 near" in clean.note
    assert "2 by the rule" in clean.note and "1 by a person" in clean.note and clean.note.endswith("before SFT")
    assert clean.provenance["dedup_run"] == run.pk and clean.provenance["source_version"] == version.pk
    assert (clean.provenance["dropped"], clean.provenance["dropped_by_person"]) == (3, 1)
    run.refresh_from_db()
    assert (run.output_version, run.dropped_count) == (clean, 3)
    actions = list(AuditEvent.objects.filter(target_id=str(run.pk), target_type="dedup.deduprun")
                   .values_list("action", flat=True).order_by("pk"))
    assert actions == ["dedup.decide"] * 3 + ["dedup.apply_rule", "dedup.write_version"]
    assert AuditEvent.objects.filter(action="version.freeze", target_id=str(clean.pk)).exists()


def test_nothing_dropped_nothing_written_and_earlier_members_are_not_decided(dataset):
    v1 = make_version(dataset, ["Same text."])
    v2 = make_version(dataset, ["same text", "other"])
    run = run_dedup(v2, against=[v1.pk], method="exact")
    with pytest.raises(decisions.DecisionError, match="No example is marked drop"):
        decisions.write_clean_version(run)
    earlier = ClusterMember.objects.get(cluster__run=run, version=v1)
    with pytest.raises(decisions.DecisionError, match="earlier version"):
        decisions.decide_member(earlier, keep=False)
    with pytest.raises(decisions.DecisionError, match="keep must be"):
        decisions.decide_cluster(run.clusters.get(), "some")


def test_an_empty_version_and_bad_parameters_are_refused_with_the_field_named(dataset):
    empty = freeze_version(dataset, [])
    with pytest.raises(ValidationError) as refused:
        launching.launch("deduplicate", {"version": empty.pk}, enqueue=False)
    assert "holds no examples" in refused.value.message_dict["version"][0]
    version = make_version(dataset, ["a"])
    for params, field in (({"against": [version.pk]}, "against"), ({"threshold": 0.2}, "threshold"),
                          ({"method": "fuzzy"}, "method"), ({"rule": "random"}, "rule")):
        with pytest.raises(ValidationError) as refused:
            launching.launch("deduplicate", {"version": version.pk, **params}, enqueue=False)
        assert field in refused.value.message_dict
    assert not Job.objects.exists()


def test_a_retried_job_starts_over(dataset):
    version = make_version(dataset, ["x.", "X"])
    run = run_dedup(version, method="exact")
    job = run.job
    Job.objects.filter(pk=job.pk).update(status=Job.Status.FAILED)
    job.refresh_from_db()
    assert launching.retry(job)
    from apps.jobs.runner import execute

    execute(job.pk, worker="test")
    assert DedupRun.objects.filter(job=job).count() == 1 and ClusterMember.objects.count() == 2


# ----- pages


def test_the_pages_launch_show_and_decide(client, dataset, users):
    version = make_version(dataset, ["The answer is 72.", "the answer is 72", "<script>alert(1)</script> 72"])
    client.force_login(users["admin"])
    html = client.get(reverse("version_detail", args=[version.pk])).content.decode()
    assert reverse("version_dedup", args=[version.pk]) in html
    response = client.post(reverse("version_dedup", args=[version.pk]),
                           {"method": "exact", "threshold": "0.8", "rule": "first"})
    assert response.status_code == 302
    job = Job.objects.get(kind="deduplicate")
    assert job.params["version"] == version.pk and job.status == "queued"
    from apps.jobs.runner import execute

    execute(job.pk, worker="test")
    run = DedupRun.objects.get()
    html = client.get(reverse("version_dedup", args=[version.pk])).content.decode()
    assert run.get_absolute_url() in html
    html = client.get(reverse("job_detail", args=[job.pk])).content.decode()
    assert f'href="{run.get_absolute_url()}" id="dedup-run-link">Its 1 duplicate cluster,' in html
    html = client.get(run.get_absolute_url()).content.decode()
    assert "Cluster 1 · exact · 2 examples" in html and "Representative" in html
    duplicate = run.clusters.get().members.get(is_representative=False)
    response = client.post(reverse("dedup_member_decide", args=[duplicate.pk]), {"keep": "0"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and 'data-keep="drop"' in response.content.decode()
    assert client.post(reverse("dedup_member_decide", args=[duplicate.pk]), {"keep": "x"}).status_code == 400
    response = client.post(reverse("dedup_write", args=[run.pk]), {"note": "clean"})
    clean = DatasetVersion.objects.get(number=2)
    assert response.status_code == 302 and response["Location"] == reverse("version_detail", args=[clean.pk])
    assert clean.example_count == 2


def test_model_text_is_escaped_on_the_cluster_page(client, dataset, users):
    version = make_version(dataset, ["<script>alert(1)</script> 72", "<SCRIPT>alert(1)</SCRIPT> 72!"])
    run = run_dedup(version, method="exact")
    client.force_login(users["viewer"])
    html = client.get(run.get_absolute_url()).content.decode()
    assert "<script>alert(1)" not in html.lower() and "&lt;script&gt;alert(1)" in html.lower()
    assert "Apply the rule" not in html and "dedup/members" not in html  # a viewer sees, but does not decide


def test_the_empty_version_page_says_why(client, dataset, users):
    empty = freeze_version(dataset, [])
    client.force_login(users["admin"])
    response = client.post(reverse("version_dedup", args=[empty.pk]), {"method": "exact", "threshold": "0.8",
                                                                       "rule": "first"})
    assert response.status_code == 400 and "holds no examples" in response.content.decode()
    assert not Job.objects.exists()


def test_who_may_do_what_on_the_pages(client, dataset, users):
    version = make_version(dataset, ["x.", "X"])
    run = run_dedup(version, method="exact")
    member = run.clusters.get().members.last()
    client.force_login(users["viewer"])
    assert client.get(run.get_absolute_url()).status_code == 200
    assert client.post(reverse("dedup_member_decide", args=[member.pk]), {"keep": "0"}).status_code == 403
    assert client.post(reverse("dedup_apply_rule", args=[run.pk])).status_code == 403
    assert client.post(reverse("version_dedup", args=[version.pk]), {"method": "exact"}).status_code == 403
    client.force_login(users["reviewer"])
    assert client.post(reverse("dedup_apply_rule", args=[run.pk])).status_code == 302
    assert client.post(reverse("dedup_write", args=[run.pk])).status_code == 302
    stranger = make_user("nobody-in-particular")
    client.force_login(stranger)
    assert client.get(run.get_absolute_url()).status_code in (200, 403)  # "no role yet" page or refusal
    assert b"Cluster 1" not in client.get(run.get_absolute_url()).content


# ----- the GRPO group flag


def test_the_group_view_flags_duplicate_completions(admin_client, dataset):
    prompt = add_prompt(dataset, "What is 48 + 24?")
    job = Job.objects.create(kind="grpo", status="succeeded")
    long_reasoning = " ".join(f"step {i} adds the numbers" for i in range(60))
    members = add_rollouts(job, prompt, [
        "<think>48 + 24 = 72</think> <answer>72</answer>",
        "<think>48 + 24 = 72.</think>  <answer>72</answer>",  # the same once punctuation and spacing go
        f"<think>{long_reasoning} so 71</think> <answer>71</answer>",
        f"<think>{long_reasoning} hence 71</think> <answer>71</answer>",  # near-identical
        "<think>I guess</think> <answer>70</answer>",
    ], step=1, total_reward=[1.0, 1.0, 0.0, 0.0, 0.0], advantage=[1.2, 1.2, -0.6, -0.6, -0.6])
    html = admin_client.get(reverse("rollout_group", args=[members[0].pk])).content.decode()
    assert 'id="duplicate-count">2 duplicates' in html
    assert "Duplicate of sample 0" in html and "Near-identical to sample 2" in html
    assert "advantage carries no signal" in html and html.count('class="duplicate-flag') == 2
    other = add_rollouts(job, prompt, ["<think>a</think>", "<think>b</think>"], step=2)
    html = admin_client.get(reverse("rollout_group", args=[other[0].pk])).content.decode()
    assert "duplicate-count" not in html and "duplicate-flag" not in html
