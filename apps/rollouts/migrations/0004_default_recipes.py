from django.db import migrations


def add_default_recipes(apps, schema_editor):
    from workers.rewards.recipes import DEFAULT_RECIPES, Recipe

    RewardRecipe = apps.get_model("rollouts", "RewardRecipe")
    for name, spec in DEFAULT_RECIPES.items():
        recipe = Recipe.from_spec(spec)
        RewardRecipe.objects.get_or_create(
            name=name, content_hash=recipe.content_hash,
            defaults={"version": 1, "spec": recipe.to_spec(), "description": "Built in"},
        )


class Migration(migrations.Migration):
    dependencies = [("rollouts", "0003_reward_recipe")]
    operations = [migrations.RunPython(add_default_recipes, migrations.RunPython.noop)]
