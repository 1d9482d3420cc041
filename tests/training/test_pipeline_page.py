from urllib.parse import urlencode

import pytest
from django.urls import reverse

from apps.datasets.models import Dataset, Example, ModelVersion, Prompt
from apps.datasets.versions import freeze_version
from apps.decontam.models import DecontamCheck, Match
from apps.dedup.models import DedupRun
from apps.jobs.models import Job
from apps.rollouts.models import RewardRecipe
from apps.training.models import Evaluation
from apps.training.pipeline import lineage_root, pipeline_for
from workers.rewards.recipes import DEFAULT_RECIPES

pytestmark = pytest.mark.django_db
Stage = ModelVersion.Stage


def job(kind, status="succeeded", **params):
    return Job.objects.create(kind=kind, params=params, status=status)


def model(name, stage, parent=None, produced_by=None, **extra):
    return ModelVersion.objects.create(name=name, uri=f"/models/{name}", stage=stage, parent=parent,
                                       produced_by=produced_by, **extra)


def trained(name, stage, parent, kind, **params):
    """A final model of `stage` made from `parent` by a succeeded job, as the training sink registers it."""
    producer = job(kind, model_version=parent.pk, stage=stage.value, **params)
    return model(name, stage, parent, producer, step=10)


def page(client, base):
    response = client.get(reverse("pipeline", args=[base.pk]))
    assert response.status_code == 200
    return {s.key: s for s in response.context["stages"]}, response.content.decode()


def launch_href(kind, params):
    return f'{reverse("job_new", args=[kind])}?{urlencode(params)}'.replace("&", "&amp;")


@pytest.fixture
def base(db):
    return model("tiny-base", Stage.BASE)


def test_an_empty_lineage_has_every_stage_not_run_and_launches_the_first_two(admin_client, base):
    stages, html = page(admin_client, base)
    assert list(stages) == ["r1_zero", "cold_start", "reasoning_rl", "rejection_sft", "all_scenario_rl", "distilled"]
    assert {s.status for s in stages.values()} == {"not run"}
    assert stages["r1_zero"].launch == ("grpo", {"model_version": base.pk, "stage": "r1_zero"})
    assert launch_href("grpo", {"model_version": base.pk, "stage": "r1_zero"}) in html
    assert launch_href("sft", {"model_version": base.pk, "stage": "cold_start", "format": "cold_start"}) in html
    # Nothing to start from yet for the later stages.
    assert [stages[k].launch for k in ["reasoning_rl", "rejection_sft", "all_scenario_rl", "distilled"]] == [None] * 4


def test_a_cold_start_model_is_done_counts_its_checkpoints_and_feeds_reasoning_rl(admin_client, base):
    recipe = RewardRecipe.save_spec("r1-reasoning-math", DEFAULT_RECIPES["r1-reasoning-math"])
    cold = trained("tiny-cold", Stage.COLD_START, base, "sft", format="cold_start")
    checkpoint = model("tiny-cold-step-5", Stage.COLD_START, base, cold.produced_by, step=5,
                       config={"checkpoint": True})
    stages, html = page(admin_client, base)
    cold_stage = stages["cold_start"]
    assert cold_stage.status == "done" and cold_stage.models == [cold] and cold_stage.checkpoints == 1
    assert cold_stage.jobs == [cold.produced_by]
    assert checkpoint.name not in html and f'href="{reverse("job_detail", args=[cold.produced_by.pk])}"' in html
    params = {"model_version": cold.pk, "stage": "reasoning_rl", "recipe": recipe.pk}
    assert stages["reasoning_rl"].launch == ("grpo", params)
    assert launch_href("grpo", params) in html


def test_rejection_sampling_then_sft_of_the_base_then_distillation(admin_client, base, dataset,
                                                                   django_assert_max_num_queries):
    cold = trained("tiny-cold", Stage.COLD_START, base, "sft")
    rl = trained("tiny-rl", Stage.REASONING_RL, cold, "grpo", dataset=dataset.pk)
    stages, _ = page(admin_client, base)
    assert stages["rejection_sft"].launch == ("rejection_sample", {"model_version": rl.pk})
    assert stages["distilled"].launch is None

    # A finished rejection job: its output version carries the job in its provenance, as rejection.py writes it.
    rejection = job("rejection_sample", model_version=rl.pk, dataset=dataset.pk, output_dataset="rs-out")
    output = freeze_version(Dataset.objects.create(name="rs-out"), [],
                            provenance={"job": rejection.pk, "model_version": rl.pk, "source_dataset": dataset.pk})
    stages, html = page(admin_client, base)
    sft_params = {"model_version": base.pk, "dataset_version": output.pk, "stage": "rejection_sft"}
    assert stages["rejection_sft"].launch == ("sft", sft_params)
    assert launch_href("sft", sft_params) in html
    assert stages["rejection_sft"].jobs == [rejection]
    assert stages["rejection_sft"].datasets == [("gsm-mini", "gsm-mini")]
    assert stages["rejection_sft"].status == "not run"  # sampled, but no model fine-tuned yet
    assert stages["distilled"].launch == ("sft", {"dataset_version": output.pk, "stage": "distilled"})

    # Stage 3 fine-tunes the base; a smaller model is distilled from the same data.
    rejection_sft = trained("tiny-rsft", Stage.REJECTION_SFT, base, "sft", dataset_version=output.pk)
    student = model("student-base", Stage.BASE)
    distilled = trained("student-distilled", Stage.DISTILLED, student, "sft", dataset_version=output.pk)
    with django_assert_max_num_queries(10):  # independent of the lineage's size
        stages = {s.key: s for s in pipeline_for(base)}
    assert stages["rejection_sft"].status == "done" and stages["rejection_sft"].models == [rejection_sft]
    assert ("rs-out v1", "rs-out") in stages["rejection_sft"].datasets
    assert stages["all_scenario_rl"].launch == ("grpo", {"model_version": rejection_sft.pk, "stage": "all_scenario_rl"})
    assert stages["distilled"].models == [distilled] and stages["distilled"].status == "done"
    # The student's own pipeline is not this lineage's distillation.
    assert {s.key: s for s in pipeline_for(student)}["distilled"].models == []


def test_a_running_job_makes_its_stage_running(admin_client, base):
    running = job("grpo", status="running", model_version=base.pk, stage="r1_zero")
    job("grpo", status="queued", model_version=base.pk + 1000, stage="r1_zero")  # another lineage's
    stages, html = page(admin_client, base)
    assert stages["r1_zero"].status == "running" and stages["r1_zero"].jobs == [running]
    assert stages["cold_start"].status == "not run"
    assert 'data-status="running"' in html


def test_a_descendant_redirects_to_the_root_pipeline(admin_client, base):
    cold = trained("tiny-cold", Stage.COLD_START, base, "sft")
    rl = trained("tiny-rl", Stage.REASONING_RL, cold, "grpo")
    assert lineage_root(rl) == base
    response = admin_client.get(reverse("pipeline", args=[rl.pk]))
    assert response.status_code == 302 and response.url == reverse("pipeline", args=[base.pk])
    assert admin_client.get(reverse("pipeline", args=[99999])).status_code == 404


def test_a_viewer_sees_the_page_without_launch_links(client, users, base):
    client.force_login(users["viewer"])
    stages, html = page(client, base)
    assert stages["r1_zero"].launch is not None
    assert reverse("job_new", args=["grpo"]) not in html and "Launch" not in html


def test_evaluations_show_with_their_pass_at_1(admin_client, base, dataset):
    cold = trained("tiny-cold", Stage.COLD_START, base, "sft")
    evaluation = Evaluation.objects.create(
        model_version=cold, dataset=dataset, job=job("evaluate", model_version=cold.pk, dataset=dataset.pk),
        k=16, temperature=0.6, top_p=0.95, metrics={"pass@1": 0.4375, "cons@16": 0.5})
    stages, html = page(admin_client, base)
    assert stages["cold_start"].evaluations == [evaluation]
    assert "tiny-cold on gsm-mini" in html and "pass@1 0.438" in html and "cons@16 0.5" in html


def test_the_model_list_links_each_version_to_its_pipeline(admin_client, base):
    html = admin_client.get(reverse("model_list")).content.decode()
    assert f'href="{reverse("pipeline", args=[base.pk])}"' in html


def test_the_rejection_stage_shows_what_was_checked_of_its_data_and_trains_on_the_cleaned_version(
        admin_client, base, dataset):
    cold = trained("tiny-cold", Stage.COLD_START, base, "sft")
    rl = trained("tiny-rl", Stage.REASONING_RL, cold, "grpo")
    stages, html = page(admin_client, base)
    not_yet = {line.name: line.summary for line in stages["rejection_sft"].hygiene}
    assert not_yet == {"Judge": "no rejection job used a judge (an llm_judge component in its recipe)",
                       "Non-reasoning share": "no non-reasoning prompts sampled",
                       "Decontamination": "not checked against any benchmark", "De-duplication": "not de-duplicated"}

    # A rejection job that judged and mixed in non-reasoning data, with the result keys those jobs write.
    rejection = job("rejection_sample", model_version=rl.pk, dataset=dataset.pk)
    rejection.result = {"judge_calls": 40, "judge_cached": 8, "judge_no_verdict": 2, "kept_reasoning": 30,
                        "kept_non_reasoning": 12, "non_reasoning_in_version": 10, "non_reasoning_share": 0.25}
    rejection.save()
    out = Dataset.objects.create(name="rs-out")
    examples = [Example.objects.create(dataset=out, messages=[{"role": "user", "content": f"q{i}"}],
                                       content_hash=f"h{i}") for i in range(3)]
    sampled = freeze_version(out, examples, provenance={"job": rejection.pk})
    benchmark = Dataset.objects.create(name="bench")
    leaked = Prompt.objects.create(dataset=benchmark, question="q0", content_hash="b0")
    check = DecontamCheck.objects.create(job=job("decontaminate"), version=sampled, n=10, examples_checked=3,
                                         benchmark_prompts=1, match_count=2)
    for example, decision in [(examples[0], Match.Decision.CONFIRMED), (examples[1], Match.Decision.PENDING)]:
        Match.objects.create(decontam_check=check, example=example, position=0, part=Match.Part.PROMPT,
                             benchmark_prompt=leaked, shared_ngrams=3, decision=decision)
    decontaminated = freeze_version(out, examples[1:])
    check.output_version, check.removed_count = decontaminated, 1
    check.save()
    run = DedupRun.objects.create(version=decontaminated, cluster_count=1, duplicate_count=1, dropped_count=1)
    deduplicated = freeze_version(out, examples[2:])
    run.output_version = deduplicated
    run.save()

    stages, html = page(admin_client, base)
    lines = {line.name: line for line in stages["rejection_sft"].hygiene}
    assert lines["Judge"].summary == "40 calls, 8 answered from the cache, 2 without a verdict"
    assert lines["Non-reasoning share"].summary == (
        "30 reasoning and 12 non-reasoning examples kept; 10 non-reasoning in the version (share 0.25)")
    assert lines["Decontamination"].summary == ("3 examples against 1 benchmark prompts at n=10: 2 matches, "
                                                "1 confirmed, 0 dismissed, 1 to review, 1 removed")
    assert lines["De-duplication"].summary.endswith("1 clusters, 1 duplicates, 1 dropped")
    for name, url in [("judge", reverse("job_detail", args=[rejection.pk])),
                      ("decontamination", reverse("decontam_check", args=[check.pk])),
                      ("de-duplication", reverse("dedup_run", args=[run.pk]))]:
        assert f'id="hygiene-{name}"' in html and f'href="{url}"' in html
    # The SFT trains on the end of the cleaning chain, not on what rejection sampling wrote.
    assert stages["rejection_sft"].launch == ("sft", {"model_version": base.pk, "dataset_version": deduplicated.pk,
                                                      "stage": "rejection_sft"})
