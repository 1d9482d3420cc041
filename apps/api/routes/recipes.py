from django.db import IntegrityError
from django.db.models import Max, OuterRef, Subquery
from ninja import Query, Router, Status

from apps.api.auth import require_perm
from apps.api.errors import ApiError
from apps.api.paging import page
from apps.api.responses import READ, WRITE
from apps.api.schemas import ErrorOut, JudgePromptIn, JudgePromptOut, JudgePromptPage, RecipePage, RecipeQuery
from apps.core import audit
from apps.rollouts.models import JudgePrompt, RewardRecipe

router = Router(tags=["recipes"])


@router.get("/recipes", response={200: RecipePage, **READ}, summary="Reward recipes and their components",
            description="Every stored version, newest first; `latest` marks the version a recipe's name stands "
                        "for (scoring, generation and GRPO take the name). `name` keeps one recipe's versions.")
def list_recipes(request, query: Query[RecipeQuery]):
    require_perm(request, "rollouts.view_rewardrecipe")
    return page(_versions(RewardRecipe, query.name), query.after, query.limit)


@router.get("/judge-prompts", response={200: JudgePromptPage, **READ}, summary="Judge prompts (for llm_judge)",
            description="Every stored version, newest first; `latest` marks the version a name stands for. "
                        "`name` keeps one prompt's versions.")
def list_judge_prompts(request, query: Query[RecipeQuery]):
    require_perm(request, "rollouts.view_judgeprompt")
    return page(_versions(JudgePrompt, query.name), query.after, query.limit)


@router.post("/judge-prompts", response={201: JudgePromptOut, 200: JudgePromptOut, 409: ErrorOut, **WRITE},
             summary="Save a judge prompt",
             description="Changed text under a name makes its next version (201); text that a version of the "
                         "name already has returns that version (200). Needs `rollouts.add_judgeprompt`.")
def create_judge_prompt(request, payload: JudgePromptIn):
    require_perm(request, "rollouts.add_judgeprompt")
    before = JudgePrompt.objects.filter(name=payload.name).count()
    try:
        prompt = JudgePrompt.save_text(payload.name, payload.text, user=request.user, description=payload.description)
    except ValueError as exc:
        raise ApiError(422, [{"loc": ["body", "text"], "msg": str(exc), "type": "value_error"}]) from None
    except IntegrityError:  # the same name's next version saved by someone else at the same moment
        raise ApiError(409, f"another version of {payload.name!r} was saved at the same time: send it again") from None
    created = JudgePrompt.objects.filter(name=payload.name).count() > before
    if created:
        audit.record(request.user, "judge_prompt.create", prompt, via="api", version=prompt.version)
    prompt.newest_version = JudgePrompt.latest(prompt.name).version
    return Status(201 if created else 200, prompt)


def _versions(model, name: str | None):
    """Every stored version (of one name, if given), each knowing its name's newest version number."""
    newest = model.objects.filter(name=OuterRef("name")).values("name").annotate(v=Max("version")).values("v")
    versions = model.objects.annotate(newest_version=Subquery(newest))
    return versions.filter(name=name) if name else versions
