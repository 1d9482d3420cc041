from django.db.models import Max, OuterRef, Subquery
from ninja import Query, Router

from apps.api.auth import require_perm
from apps.api.paging import page
from apps.api.responses import READ
from apps.api.schemas import RecipePage, RecipeQuery
from apps.rollouts.models import RewardRecipe

router = Router(tags=["recipes"])


@router.get("/recipes", response={200: RecipePage, **READ}, summary="Reward recipes and their components",
            description="Every stored version, newest first; `latest` marks the version a recipe's name stands "
                        "for (scoring, generation and GRPO take the name). `name` keeps one recipe's versions.")
def list_recipes(request, query: Query[RecipeQuery]):
    require_perm(request, "rollouts.view_rewardrecipe")
    newest = RewardRecipe.objects.filter(name=OuterRef("name")).values("name").annotate(v=Max("version")).values("v")
    recipes = RewardRecipe.objects.annotate(newest_version=Subquery(newest))
    if query.name:
        recipes = recipes.filter(name=query.name)
    return page(recipes, query.after, query.limit)
