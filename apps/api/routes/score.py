from django.conf import settings
from django.shortcuts import get_object_or_404
from ninja import Router, Status

from apps.api.auth import require_perm
from apps.api.errors import ApiError, field_errors
from apps.api.responses import READ_ONE, WRITE
from apps.api.schemas import ErrorOut, JobOut, ScoreIn, ScoreOut
from apps.jobs import kinds
from apps.jobs.models import Job
from apps.rollouts import score_batch
from apps.rollouts.models import RewardRecipe
from workers.rewards.sandbox import SandboxUnavailable

router = Router(tags=["scoring"])


def _unknown(field: str, message: str) -> ApiError:
    return ApiError(422, [{"loc": ["body", field], "msg": message, "type": "value_error"}])


@router.post("/score", response={200: ScoreOut, 202: JobOut, 503: ErrorOut, **WRITE},
             summary="Score completions with a reward recipe (nothing is stored)",
             description="Needs `rollouts.add_rollout` (scoring runs model code in the sandbox and may launch a "
                         "job, as an ingest does). `recipe` names a reward recipe (GET /recipes), `version` one of "
                         f"its versions (default: the newest). Up to SCORE_SYNC_MAX items ({settings.SCORE_SYNC_MAX} "
                         "here) are scored in the request: a 200 with one score per item, in order. More, up to "
                         f"SCORE_MAX_ITEMS ({settings.SCORE_MAX_ITEMS} here), go to a `score_completions` job: a "
                         "202 with the job; follow it at GET /jobs/{id} and read the scores at GET /score/{job_id}. "
                         "A bad item is a 422 naming its index and field (`loc`: [\"body\", \"items\", i, field]). "
                         "A recipe with code_accuracy where the code sandbox cannot start is a 503 saying why.")
def score(request, payload: ScoreIn):
    require_perm(request, "rollouts.add_rollout")
    recipe = score_batch.recipe_named(payload.recipe, payload.version)
    if recipe is None and payload.version is not None and score_batch.recipe_named(payload.recipe):
        raise _unknown("version", f"Recipe {payload.recipe!r} has no version {payload.version}")
    if recipe is None:
        known = ", ".join(sorted(set(RewardRecipe.objects.values_list("name", flat=True))))
        raise _unknown("recipe", f"No reward recipe named {payload.recipe!r}; known: {known}")
    items = [item.dict() for item in payload.items]
    if len(items) > settings.SCORE_SYNC_MAX:
        try:
            job = score_batch.launch_batch(recipe, items, user=request.user, via="api")
        except kinds.ValidationError as exc:
            raise ApiError(422, field_errors(exc, "body")) from None
        return Status(202, get_object_or_404(Job.objects.select_related("created_by"), pk=job.pk))
    try:
        scores = score_batch.score_items(recipe.spec, items)
    except SandboxUnavailable as exc:
        raise ApiError(503, f"This recipe runs code, and the code sandbox cannot start here: {exc}") from None
    return {"recipe": recipe.name, "version": recipe.version, "items": scores}


@router.get("/score/{job_id}", response={200: ScoreOut, 409: ErrorOut, **READ_ONE},
            summary="The scores a score_completions job wrote",
            description="Needs `jobs.view_job`. A 409 until the job has succeeded (its status says why not).")
def score_results(request, job_id: int):
    require_perm(request, "jobs.view_job")
    job = get_object_or_404(Job, pk=job_id, kind=score_batch.KIND)
    if job.status != Job.Status.SUCCEEDED:
        raise ApiError(409, f"Job {job.pk} is {job.status}" + (f": {job.error}" if job.error else "") +
                       "; the scores are here once it has succeeded")
    scores = score_batch.read_scores(job)
    if scores is None:
        raise ApiError(404, f"The scores of job {job.pk} are no longer stored")
    return scores
