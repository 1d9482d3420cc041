from ninja import Query, Router

from apps.api.auth import require_perm
from apps.api.errors import ApiError, form_errors
from apps.api.paging import page
from apps.api.responses import READ
from apps.api.schemas import RolloutPage, RolloutQuery
from apps.rollouts.browse import SORTS, RolloutFilterForm

router = Router(tags=["rollouts"])


@router.get("/rollouts", response={200: RolloutPage, **READ}, summary="Rollouts, filtered like the rollout browser",
            description="The same filters as the browser's URL. Pages follow `sort` (default newest first); "
                        "`next` is the cursor for the following page.")
def list_rollouts(request, query: Query[RolloutQuery]):
    require_perm(request, "rollouts.view_rollout")
    filters = query.dict(exclude={"after", "limit"}, exclude_none=True)
    form = RolloutFilterForm(data=filters)
    if not form.is_valid():
        raise ApiError(422, form_errors(form, "query"))
    field, descending = SORTS[form.cleaned_data["sort"] or "newest"]
    # As the browser counts: a filter is counted (exact within the time budget), the whole table estimated.
    return page(form.rollouts(), query.after, query.limit, field=field, descending=descending,
                filtered=form.is_filtered())
