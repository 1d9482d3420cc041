"""The DeepSeek-R1 pipeline of one base model: what each stage of the report has produced so far,
the jobs behind it, and the job (kind and prefilled parameters) that would run it next."""

from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.db.models import Count, Q
from django.urls import reverse

from apps.datasets.models import Dataset, DatasetVersion, ModelVersion
from apps.decontam.models import DecontamCheck, Match
from apps.dedup.models import DedupRun
from apps.jobs.kinds import KINDS
from apps.jobs.models import Job
from apps.rollouts.models import RewardRecipe
from apps.training.models import Evaluation

Stage = ModelVersion.Stage
ACTIVE = (Job.Status.QUEUED, Job.Status.RUNNING)

# (key, title, description, job kind) in the order of the report.
STAGES = [
    (Stage.R1_ZERO, "R1-Zero", "GRPO straight on the base model, with rule rewards only.", "grpo"),
    (Stage.COLD_START, "Cold start", "SFT of the base model on a few thousand readable long-CoT examples.", "sft"),
    (Stage.REASONING_RL, "Reasoning RL", "GRPO from the cold-start model, adding a language-consistency reward.",
     "grpo"),
    (Stage.REJECTION_SFT, "Rejection sampling + SFT",
     "Keep the correct, readable samples of the reasoning-RL model, then fine-tune the base model on them.", "sft"),
    (Stage.ALL_SCENARIO_RL, "All-scenario RL", "GRPO from the rejection-SFT model for helpfulness and harmlessness.",
     "grpo"),
    (Stage.DISTILLED, "Distillation", "SFT of a smaller model on the rejection-sampled data.", "sft"),
]


@dataclass
class StageView:
    key: str
    title: str
    description: str
    models: list = field(default_factory=list)  # final ModelVersions, newest first
    checkpoints: int = 0
    jobs: list = field(default_factory=list)
    datasets: list = field(default_factory=list)  # (label, dataset name) for dataset_detail links
    evaluations: list = field(default_factory=list)
    status: str = "not run"
    launch: tuple[str, dict] | None = None
    hygiene: list = field(default_factory=list)  # HygieneLine: what was checked of the data, with its evidence

    @property
    def launch_query(self) -> str:
        return urlencode(self.launch[1]) if self.launch else ""

    @property
    def launch_label(self) -> str:
        return KINDS[self.launch[0]].label if self.launch else ""


@dataclass
class HygieneLine:
    """One check of the rejection-sampled data: its figures in words and where the evidence is."""
    name: str
    summary: str
    links: list = field(default_factory=list)  # (label, url)


def lineage_root(model: ModelVersion) -> ModelVersion:
    return model.lineage()[0]


def _descendants(base: ModelVersion, everything: list[ModelVersion]) -> list[ModelVersion]:
    children: dict[int, list[ModelVersion]] = {}
    for m in everything:
        children.setdefault(m.parent_id, []).append(m)
    found, todo, seen = [], [base], {base.pk}
    while todo:
        node = todo.pop()
        found.append(node)
        for child in children.get(node.pk, []):
            if child.pk not in seen:  # a parent cycle must not loop forever
                seen.add(child.pk)
                todo.append(child)
    return found


def _param(job: Job, name: str) -> int | None:
    value = job.params.get(name)
    return int(value) if value not in (None, "") else None


def pipeline_for(base: ModelVersion) -> list[StageView]:
    everything = list(ModelVersion.objects.select_related("produced_by"))
    lineage = _descendants(base, everything)
    lineage_ids = {m.pk for m in lineage}
    jobs = list(Job.objects.filter(kind__in=["sft", "grpo", "rejection_sample"],
                                   params__model_version__in=sorted(lineage_ids)))

    def newest(stage):
        return max((m for m in lineage if m.stage == stage and not m.config.get("checkpoint")),
                   key=lambda m: m.pk, default=None)

    # Rejection sampling runs on the reasoning-RL models; its output versions feed stage 3 and distillation.
    reasoning_ids = {m.pk for m in lineage if m.stage == Stage.REASONING_RL}
    rejection_jobs = [j for j in jobs if j.kind == "rejection_sample" and _param(j, "model_version") in reasoning_ids]
    rejection_versions = list(DatasetVersion.objects.filter(
        provenance__job__in=[j.pk for j in rejection_jobs if j.status == Job.Status.SUCCEEDED]))
    # Decontamination and de-duplication write new versions from a rejection version: the newest of
    # those is what the SFT should train on.
    checks, runs, cleaned = _checks_of(rejection_versions)
    newest_rejection = max(rejection_versions + cleaned, key=lambda v: v.pk, default=None)

    # Distilled models descend from another base: find them through the SFT jobs on this lineage's data.
    rejection_version_ids = [v.pk for v in rejection_versions]
    distill_jobs = list(Job.objects.filter(kind="sft", params__stage=Stage.DISTILLED,
                                           params__dataset_version__in=rejection_version_ids))
    distill_job_ids = {j.pk for j in distill_jobs}
    distilled = [m for m in everything if m.stage == Stage.DISTILLED and m.produced_by_id in distill_job_ids]

    views = []
    for key, title, description, kind in STAGES:
        view = StageView(key.value, title, description)
        if key == Stage.DISTILLED:
            stage_models, view.jobs = distilled, distill_jobs
        else:
            stage_models = [m for m in lineage if m.stage == key]
            view.jobs = [j for j in jobs if j.kind == kind and j.params.get("stage") == key]
            if key == Stage.REJECTION_SFT:
                view.jobs = rejection_jobs + view.jobs
        view.models = sorted((m for m in stage_models if not m.config.get("checkpoint")), key=lambda m: -m.pk)
        view.checkpoints = len(stage_models) - len(view.models)
        view.jobs.sort(key=lambda j: -j.pk)
        view.status = _status(view)
        views.append(view)

    _add_datasets_and_evaluations(views)
    _add_launches(views, base, newest, newest_rejection)
    by_key = {v.key: v for v in views}
    by_key[Stage.REJECTION_SFT].hygiene = _hygiene(rejection_jobs, checks, runs)
    return views


CLEANING_HOPS = 4  # decontaminated, then de-duplicated, then again: a chain longer than this is not followed


def _checks_of(versions: list[DatasetVersion]):
    """The decontamination checks and de-duplication runs of `versions` and of the versions they wrote,
    and those written versions."""
    checks, runs, cleaned, frontier = [], [], [], [v.pk for v in versions]
    for _ in range(CLEANING_HOPS):
        if not frontier:
            break
        new_checks = list(DecontamCheck.objects.filter(version__in=frontier).annotate(
            confirmed=Count("matches", filter=Q(matches__decision=Match.Decision.CONFIRMED)),
            dismissed=Count("matches", filter=Q(matches__decision=Match.Decision.DISMISSED))))
        new_runs = list(DedupRun.objects.filter(version__in=frontier))
        checks += new_checks
        runs += new_runs
        frontier = [x.output_version_id for x in new_checks + new_runs if x.output_version_id]
        cleaned += DatasetVersion.objects.filter(pk__in=frontier)
    return checks, runs, cleaned


def _hygiene(rejection_jobs: list[Job], checks: list, runs: list) -> list[HygieneLine]:
    """The judge, the non-reasoning share, decontamination and de-duplication of the rejection-sampled
    data, each with its counts and a link to its evidence; a check not run yet says so."""
    done = [j for j in rejection_jobs if j.status == Job.Status.SUCCEEDED]
    lines = []

    judged = [j for j in done if j.result.get("judge_calls") or j.result.get("judge_cached")]
    if judged:
        calls, cached, no_verdict = (sum(j.result.get(key, 0) for j in judged)
                                     for key in ("judge_calls", "judge_cached", "judge_no_verdict"))
        lines.append(HygieneLine("Judge", f"{calls} calls, {cached} answered from the cache, {no_verdict} without a "
                                          "verdict", [(f"job #{j.pk}", reverse("job_detail", args=[j.pk]))
                                                      for j in judged]))
    else:
        lines.append(HygieneLine("Judge", "no rejection job used a judge (an llm_judge component in its recipe)"))

    mixed = [j for j in done if "kept_non_reasoning" in j.result]
    if mixed:
        newest = max(mixed, key=lambda j: j.pk)
        r = newest.result
        share = r.get("non_reasoning_share")
        lines.append(HygieneLine("Non-reasoning share", (
            f"{r.get('kept_reasoning', 0)} reasoning and {r.get('kept_non_reasoning', 0)} non-reasoning examples "
            f"kept; {r.get('non_reasoning_in_version', r.get('kept_non_reasoning', 0))} non-reasoning in the "
            f"version" + (f" (share {share:.2f})" if isinstance(share, float) else "")),
            [(f"job #{newest.pk}", reverse("job_detail", args=[newest.pk]))]))
    else:
        lines.append(HygieneLine("Non-reasoning share", "no non-reasoning prompts sampled"))

    if checks:
        lines.append(HygieneLine("Decontamination", "; ".join(
            f"{c.examples_checked} examples against {c.benchmark_prompts} benchmark prompts at n={c.n}: "
            f"{c.match_count} matches, {c.confirmed} confirmed, {c.dismissed} dismissed, "
            f"{c.match_count - c.confirmed - c.dismissed} to review"
            + (f", {c.removed_count} removed" if c.output_version_id else "") for c in checks),
            [(f"check #{c.pk}", c.get_absolute_url()) for c in checks]))
    else:
        lines.append(HygieneLine("Decontamination", "not checked against any benchmark"))

    if runs:
        lines.append(HygieneLine("De-duplication", "; ".join(
            f"{r.get_method_display()}, {r.get_scope_display()}: {r.cluster_count} clusters, "
            f"{r.duplicate_count} duplicates" + (f", {r.dropped_count} dropped" if r.output_version_id else "")
            for r in runs), [(f"run #{r.pk}", r.get_absolute_url()) for r in runs]))
    else:
        lines.append(HygieneLine("De-duplication", "not de-duplicated"))
    return lines


def _status(view: StageView) -> str:
    if any(m.produced_by and m.produced_by.status == Job.Status.SUCCEEDED for m in view.models):
        return "done"
    if any(j.status in ACTIVE for j in view.jobs):
        return "running"
    return "not run"


def _add_datasets_and_evaluations(views: list[StageView]) -> None:
    """Two queries for the inputs named in every stage's jobs, one for every stage's evaluations."""
    all_jobs = [j for v in views for j in v.jobs]
    datasets = Dataset.objects.in_bulk([d for j in all_jobs if (d := _param(j, "dataset"))])
    versions = DatasetVersion.objects.select_related("dataset").in_bulk(
        [d for j in all_jobs if (d := _param(j, "dataset_version"))])
    evaluations = Evaluation.objects.filter(model_version__in=[m for v in views for m in v.models])
    evaluations = list(evaluations.select_related("dataset", "model_version"))
    for view in views:
        links = []
        for job in view.jobs:
            if (d := datasets.get(_param(job, "dataset"))) is not None:
                links.append((d.name, d.name))
            if (v := versions.get(_param(job, "dataset_version"))) is not None:
                links.append((str(v), v.dataset.name))
        view.datasets = list(dict.fromkeys(links))  # unique, in order
        model_ids = {m.pk for m in view.models}
        view.evaluations = [e for e in evaluations if e.model_version_id in model_ids]


def _add_launches(views, base, newest, newest_rejection) -> None:
    by_key = {v.key: v for v in views}
    by_key[Stage.R1_ZERO].launch = ("grpo", {"model_version": base.pk, "stage": Stage.R1_ZERO.value})
    by_key[Stage.COLD_START].launch = (
        "sft", {"model_version": base.pk, "stage": Stage.COLD_START.value, "format": "cold_start"})
    if cold := newest(Stage.COLD_START):
        params = {"model_version": cold.pk, "stage": Stage.REASONING_RL.value}
        if recipe := RewardRecipe.latest("r1-reasoning-math"):
            params["recipe"] = recipe.pk
        by_key[Stage.REASONING_RL].launch = ("grpo", params)
    if newest_rejection:
        # The report fine-tunes the base model (DeepSeek-V3-Base) on the samples, not the RL checkpoint.
        by_key[Stage.REJECTION_SFT].launch = ("sft", {
            "model_version": base.pk, "dataset_version": newest_rejection.pk, "stage": Stage.REJECTION_SFT.value})
    elif reasoning := newest(Stage.REASONING_RL):
        by_key[Stage.REJECTION_SFT].launch = ("rejection_sample", {"model_version": reasoning.pk})
    if rejection_sft := newest(Stage.REJECTION_SFT):
        by_key[Stage.ALL_SCENARIO_RL].launch = (
            "grpo", {"model_version": rejection_sft.pk, "stage": Stage.ALL_SCENARIO_RL.value})
    if newest_rejection:
        by_key[Stage.DISTILLED].launch = (
            "sft", {"dataset_version": newest_rejection.pk, "stage": Stage.DISTILLED.value})
