"""The job kinds: what parameters each takes, the function that runs it, its queue.

Parameters are validated by a Django form, so a bad value is refused with the
field named, the same way from the browser, the command line and the API.
"""

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils.module_loading import import_string

from apps.core import audit
from apps.jobs.models import Job


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str
    params_form: str  # dotted path to a forms.Form whose cleaned_data are the parameters
    run: str  # dotted path to run(ctx: JobContext) -> dict | None (the job's result summary)
    queue: str = "cpu"


KINDS = {
    kind.name: kind
    for kind in [
        JobKind(
            "import_prompts",
            "Import prompts",
            "apps.datasets.importing.ImportParamsForm",
            "apps.datasets.importing.run_import",
        ),
        JobKind(
            "score_rollouts",
            "Score rollouts",
            "apps.rollouts.scoring.ScoreParamsForm",
            "apps.rollouts.scoring.run_scoring",
        ),
        JobKind("generate", "Generate rollouts", "apps.rollouts.generation.SamplingForm",
                "apps.rollouts.generation.run_generation"),
        JobKind("evaluate", "Evaluate a model", "apps.training.evaluation.EvaluateParamsForm",
                "apps.training.evaluation.run_evaluation"),
        JobKind("sft", "Supervised fine-tuning", "apps.training.forms.SFTParamsForm",
                "apps.training.training.run_training"),
        JobKind("grpo", "GRPO", "apps.training.forms.GRPOParamsForm", "apps.training.training.run_training"),
        JobKind("rejection_sample", "Rejection sampling", "apps.datasets.rejection.RejectionParamsForm",
                "apps.datasets.rejection.run_rejection_sampling"),
        JobKind("ingest_rollouts", "Ingest rollouts", "apps.rollouts.ingest.IngestParamsForm",
                "apps.rollouts.ingest.run_ingest"),
        JobKind("compose_version", "Compose a dataset version", "apps.datasets.versions.ComposeParamsForm",
                "apps.datasets.versions.run_compose"),
        JobKind("bulk_accept", "Accept rollouts into a dataset", "apps.datasets.bulk_actions.BulkAcceptParamsForm",
                "apps.datasets.bulk_actions.run_bulk_accept"),
    ]
}


def _jsonable(value):
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def param_defaults(form_class) -> dict:
    """A field's `initial` (called, if callable) is the parameter's default when the caller leaves it out."""
    return {name: f.initial() if callable(f.initial) else f.initial
            for name, f in form_class.base_fields.items() if f.initial is not None}


def validate_params(kind: str, params: dict, via: str = "web") -> dict:
    spec = KINDS.get(kind)
    if spec is None:
        raise ValidationError({"kind": f"Unknown job kind {kind!r}; known: {', '.join(sorted(KINDS))}"})
    form_class = import_string(spec.params_form)
    form = form_class(data=param_defaults(form_class) | params)
    form.via = via  # what a server-path field may name depends on who asks
    if not form.is_valid():
        raise ValidationError(form.errors.as_data())
    return {name: _jsonable(value) for name, value in form.cleaned_data.items()}


def launch(kind: str, params: dict, user=None, label: str = "", enqueue: bool = True, via: str = "web") -> Job:
    """Validate, create the Job row (and its audit event) and, after commit, hand its id to a worker."""
    clean = validate_params(kind, params, via)
    job = Job.objects.create(
        kind=kind,
        label=label or KINDS[kind].label,
        params=clean,
        queue=queue_for(kind, clean),
        created_by=user if user is not None and user.is_authenticated else None,
    )
    audit.record(user, "job.launch", job, via=via, kind=kind)
    if enqueue:
        transaction.on_commit(lambda: send_to_worker(job))
    return job


def queue_for(kind: str, params: dict) -> str:
    """A job on a vLLM model (or one configured for CUDA) goes to the gpu queue."""
    from apps.datasets.models import ModelVersion

    if params.get("accelerate_config", "cpu") != "cpu":  # a training job on GPUs
        return "gpu"
    if params.get("model_version"):
        version = ModelVersion.objects.filter(pk=params["model_version"]).first()
        if version and (version.backend == "vllm" or version.config.get("transformers", {}).get("device") == "cuda"):
            return "gpu"
    return KINDS[kind].queue


def send_to_worker(job: Job) -> None:
    from workers.tasks import run_job

    run_job.apply_async(args=[job.pk], queue=job.queue)


def retry(job: Job) -> bool:
    if job.requeue():
        transaction.on_commit(lambda: send_to_worker(job))
        return True
    return False
