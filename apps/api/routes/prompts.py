from ninja import Query, Router

from apps.api.auth import require_perm
from apps.api.paging import page
from apps.api.responses import READ
from apps.api.schemas import PromptPage, PromptQuery
from apps.core import search
from apps.datasets.models import Prompt

router = Router(tags=["prompts"])


@router.get("/prompts", response={200: PromptPage, **READ}, summary="List prompts, newest first",
            description="`dataset` filters by dataset name (an unknown name gives an empty list); `q` searches "
                        "the question with web-search syntax: words, \"phrases\", -not, or.")
def list_prompts(request, query: Query[PromptQuery]):
    require_perm(request, "datasets.view_prompt")
    prompts = Prompt.objects.select_related("dataset")
    if query.dataset:
        prompts = prompts.filter(dataset__name=query.dataset)
    if query.q and query.q.strip():
        prompts = search.matches(prompts, "question", query.q.strip())
    return page(prompts, query.after, query.limit)
