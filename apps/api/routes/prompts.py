from django.shortcuts import get_object_or_404
from ninja import Query, Router

from apps.api.auth import require_perm
from apps.api.paging import page
from apps.api.responses import READ, READ_ONE, WRITE
from apps.api.routes.datasets import dataset_by_name
from apps.api.schemas import PromptBulkMarkIn, PromptMarkIn, PromptMarkOut, PromptOut, PromptPage, PromptQuery
from apps.core import search
from apps.datasets.models import Prompt
from apps.datasets.prompt_kind import filter_prompts, mark_prompts

router = Router(tags=["prompts"])

PROMPTS = Prompt.objects.select_related("dataset")


@router.get("/prompts", response={200: PromptPage, **READ}, summary="List prompts, newest first",
            description="`dataset` filters by dataset name (an unknown name gives an empty list); `q` searches "
                        "the question with web-search syntax: words, \"phrases\", -not, or; `reasoning` "
                        "false lists the non-reasoning prompts.")
def list_prompts(request, query: Query[PromptQuery]):
    require_perm(request, "datasets.view_prompt")
    prompts = PROMPTS
    if query.dataset:
        prompts = prompts.filter(dataset__name=query.dataset)
    if query.q and query.q.strip():
        prompts = search.matches(prompts, "question", query.q.strip())
    if query.reasoning is not None:
        prompts = prompts.filter(reasoning=query.reasoning)
    if query.domain:
        prompts = prompts.filter(domain=query.domain)
    return page(prompts, query.after, query.limit)


@router.patch("/prompts/{int:prompt_id}", response={200: PromptOut, **READ_ONE},
              summary="Mark one prompt reasoning or non-reasoning", description="Needs `datasets.change_prompt`.")
def mark_prompt(request, prompt_id: int, payload: PromptMarkIn):
    require_perm(request, "datasets.change_prompt")
    prompt = get_object_or_404(PROMPTS, pk=prompt_id)
    mark_prompts(prompt.dataset, Prompt.objects.filter(pk=prompt.pk), payload.reasoning, user=request.user,
                 via="api", ids=[prompt.pk])
    return get_object_or_404(PROMPTS, pk=prompt_id)


@router.post("/prompts/mark", response={200: PromptMarkOut, **WRITE},
             summary="Mark a dataset's prompts reasoning or non-reasoning in bulk",
             description="Needs `datasets.change_prompt`. Every prompt of `dataset` matching all the filters given "
                         "(`domain`, `q`: question contains, `ids`) is marked; the answer says how many matched "
                         "and how many changed.")
def mark_prompts_in_bulk(request, payload: PromptBulkMarkIn):
    require_perm(request, "datasets.change_prompt")
    dataset = dataset_by_name(payload.dataset)
    prompts = filter_prompts(dataset.prompts.all(), q=payload.q or "", domain=payload.domain or "")
    if payload.ids is not None:
        prompts = prompts.filter(pk__in=payload.ids)
    return mark_prompts(dataset, prompts, payload.reasoning, user=request.user, via="api",
                        q=payload.q, domain=payload.domain, ids=payload.ids)
