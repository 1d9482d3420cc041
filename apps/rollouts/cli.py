"""What the command-line tools share about reward recipes."""

from django.core.management.base import CommandError

from apps.rollouts.models import RewardRecipe


def recipe_named(name: str) -> RewardRecipe:
    """The recipe version a name stands for (its newest), or the command's error listing the known names."""
    recipe = RewardRecipe.latest(name)
    if recipe is None:
        names = sorted(set(RewardRecipe.objects.values_list("name", flat=True)))
        raise CommandError(f"No recipe {name!r}; known: {', '.join(names)}")
    return recipe
