from django.shortcuts import get_object_or_404
from ninja import File, Form, Router, Status, UploadedFile

from apps.api.auth import require_perm
from apps.api.errors import ApiError, field_errors
from apps.api.responses import WRITE
from apps.api.schemas import IngestAcceptedOut, IngestForm, IngestPreviewOut, IngestRefusedOut
from apps.core.uploads import discard_upload, save_upload
from apps.datasets.models import Dataset
from apps.jobs import kinds, launching
from apps.jobs.models import Job
from apps.rollouts.ingest import IngestFileError, detect_ingest_format, preview_source
from apps.rollouts.models import RewardRecipe

router = Router(tags=["rollouts"])


@router.post("/rollouts/ingest", response={200: IngestPreviewOut, 202: IngestAcceptedOut, 413: IngestRefusedOut,
                                           **WRITE},
             summary="Ingest rollouts from another trainer (multipart upload, run as a job)",
             description="Needs `rollouts.add_rollout`. `format`: jsonl (R1 Studio: prompt, completion, rewards, "
                         "...), trl (a GRPO `completions_*.parquet` log) or verl (a rollout_data_dir JSONL dump); "
                         "empty to detect. The upload is handed to an `ingest_rollouts` job on a worker (a 202 with "
                         "the job); follow it at GET /jobs/{id}. Every record is validated first: a bad one fails the "
                         "job with an error naming its line and field and nothing lands, unless `partial` is true, "
                         "which lands the good records and lists the rejected ones in the job's result (with the "
                         "source fields that had no place, `ignored_fields`). For files too large to upload "
                         "(MAX_UPLOAD_MB, a 413), launch an `ingest_rollouts` job with a server path through "
                         "POST /jobs. The 202 carries `preview`: what each column of the file becomes (a field of "
                         "ours, a reward component with its weight, or metadata) and the first records as they "
                         "would land; with `preview` true you get only that (a 200) and nothing lands.")
def ingest(request, file: File[UploadedFile], options: Form[IngestForm]):
    require_perm(request, "rollouts.add_rollout")
    dataset = Dataset.objects.filter(name=options.dataset).first()
    if dataset is None:
        raise _form_error("dataset", f"No dataset named {options.dataset!r}")
    recipe = None
    if options.correct_recipe:
        recipe = RewardRecipe.latest(options.correct_recipe)
        if recipe is None:
            raise _form_error("correct_recipe", f"No reward recipe named {options.correct_recipe!r}")
    path = save_upload(file)
    try:
        fmt = options.format or detect_ingest_format(path)
        preview = preview_source(path, fmt, instruction=options.instruction, correct_score=options.correct_score,
                                 reward_columns=options.reward_columns, correct_recipe=str(recipe or ""))
        if options.preview:
            discard_upload(path)
            return preview.as_dict()
        params = {**options.dict(exclude={"dataset", "preview"}), "path": str(path), "dataset": dataset.pk,
                  "format": fmt, "correct_recipe": recipe and recipe.pk}
        job = launching.launch("ingest_rollouts", params, user=request.user, via="api",
                               label=f"Ingest {file.name} into {dataset.name}")
    except (IngestFileError, kinds.ValidationError) as exc:
        discard_upload(path)  # no job was made to delete it
        if isinstance(exc, IngestFileError):
            raise _form_error("file", str(exc)) from None
        raise ApiError(422, field_errors(exc, "form")) from None
    job = get_object_or_404(Job.objects.select_related("created_by"), pk=job.pk)
    job.preview, job.ignored_fields = preview.as_dict(), preview.metadata_columns
    return Status(202, job)


def _form_error(field: str, message: str) -> ApiError:
    return ApiError(422, [{"loc": ["form", field], "msg": message, "type": "value_error"}])
