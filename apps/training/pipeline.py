"""The DeepSeek-R1 pipeline of one base model: what each stage of the report has produced so far,
the jobs behind it, and the job (kind and prefilled parameters) that would run it next."""

from dataclasses import dataclass, field
from urllib.parse import urlencode

from apps.datasets.models import Dataset, DatasetVersion, ModelVersion
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

    @property
    def launch_query(self) -> str:
        return urlencode(self.launch[1]) if self.launch else ""

    @property
    def launch_label(self) -> str:
        return KINDS[self.launch[0]].label if self.launch else ""


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
    newest_rejection = max(rejection_versions, key=lambda v: v.pk, default=None)

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
    return views


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
