from django.shortcuts import get_object_or_404
from ninja import File, Form, Router, Status, UploadedFile

from apps.api.auth import require_perm
from apps.api.errors import ApiError, field_errors
from apps.api.responses import WRITE
from apps.api.schemas import IngestForm, IngestRefusedOut, JobOut
from apps.core.uploads import discard_upload, save_upload
from apps.datasets.models import Dataset
from apps.jobs import kinds, launching
from apps.jobs.models import Job

router = Router(tags=["rollouts"])


@router.post("/rollouts/ingest", response={202: JobOut, 413: IngestRefusedOut, **WRITE},
             summary="Ingest rollouts from another trainer (multipart upload, run as a job)",
             description="Needs `rollouts.add_rollout`. `format`: jsonl (R1 Studio: prompt, completion, rewards, "
                         "...), trl (a GRPO `completions_*.parquet` log) or verl (a rollout_data_dir JSONL dump); "
                         "empty to detect. The upload is handed to an `ingest_rollouts` job on a worker (a 202 with "
                         "the job); follow it at GET /jobs/{id}. Every record is validated first: a bad one fails the "
                         "job with an error naming its line and field and nothing lands, unless `partial` is true, "
                         "which lands the good records and lists the rejected ones in the job's result (with the "
                         "source fields that had no place, `ignored_fields`). For files too large to upload "
                         "(MAX_UPLOAD_MB, a 413), launch an `ingest_rollouts` job with a server path through "
                         "POST /jobs.")
def ingest(request, file: File[UploadedFile], options: Form[IngestForm]):
    require_perm(request, "rollouts.add_rollout")
    dataset = Dataset.objects.filter(name=options.dataset).first()
    if dataset is None:
        raise ApiError(422, [{"loc": ["form", "dataset"], "msg": f"No dataset named {options.dataset!r}",
                              "type": "value_error"}])
    path = save_upload(file)
    params = {"path": str(path), "dataset": dataset.pk, **options.dict(exclude={"dataset"})}
    try:
        job = launching.launch("ingest_rollouts", params, user=request.user, via="api",
                               label=f"Ingest {file.name} into {dataset.name}")
    except kinds.ValidationError as exc:
        discard_upload(path)  # the job that would have deleted it was never made
        raise ApiError(422, field_errors(exc, "form")) from None
    return Status(202, get_object_or_404(Job.objects.select_related("created_by"), pk=job.pk))
