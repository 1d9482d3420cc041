from ninja import File, Form, Router, Status, UploadedFile

from apps.api.auth import require_perm
from apps.api.errors import ApiError
from apps.api.responses import WRITE
from apps.api.schemas import IngestForm, IngestOut, IngestRefusedOut
from apps.core.uploads import discard_upload, save_upload
from apps.datasets.importing import ImportFileError
from apps.datasets.models import Dataset
from apps.rollouts.ingest import IngestValidationError, detect_ingest_format, ingest_file

router = Router(tags=["rollouts"])


@router.post("/rollouts/ingest", response={201: IngestOut, 413: IngestRefusedOut, **WRITE},
             summary="Ingest rollouts from another trainer (multipart upload)",
             description="Needs `rollouts.add_rollout`. `format`: jsonl (R1 Studio: prompt, completion, rewards, "
                         "...), trl (a GRPO `completions_*.parquet` log) or verl (a rollout_data_dir JSONL dump); "
                         "empty to detect. Every record is validated first: a bad one makes a 422 naming its line "
                         "and field and nothing lands, unless `partial` is true, which lands the good records and "
                         "returns the rejected ones. Runs in the request; the rows belong to a new ingest job. For files "
                         "too large to upload (MAX_UPLOAD_MB, a 413), launch an `ingest_rollouts` job with a server "
                         "path through POST /jobs.")
def ingest(request, file: File[UploadedFile], options: Form[IngestForm]):
    require_perm(request, "rollouts.add_rollout")
    dataset = Dataset.objects.filter(name=options.dataset).first()
    if dataset is None:
        raise ApiError(422, [{"loc": ["form", "dataset"], "msg": f"No dataset named {options.dataset!r}",
                              "type": "value_error"}])
    path = save_upload(file)
    try:
        fmt = options.format or detect_ingest_format(path)
        result = ingest_file(path, fmt, dataset=dataset, user=request.user, partial=options.partial,
                             model_name=options.model_name, via="api")
    except IngestValidationError as exc:
        raise ApiError(422, str(exc), errors=exc.errors, error_count=exc.error_count) from None
    except ImportFileError as exc:  # IngestFileError and the shared readers' errors: the file cannot be read
        raise ApiError(422, [{"loc": ["form", "file"], "msg": str(exc), "type": "value_error"}]) from None
    finally:
        # The rows are in the database now (or were refused); the upload itself is not kept.
        discard_upload(path)
    return Status(201, {"job": result.job_id, "landed": result.landed, "duplicates": result.duplicates,
                        "rejected": result.rejected, "rejected_count": result.rejected_count,
                        "records": result.records, "prompts_created": result.prompts_created})
