from django.apps import AppConfig
from django.db.models.signals import post_migrate


class RolloutsConfig(AppConfig):
    name = "apps.rollouts"
    label = "rollouts"

    def ready(self):
        from apps.rollouts import generation, ingest, score_batch, scoring  # noqa: F401 (their job kinds)

        # After every migrate (and test-database flush): the built-in reward recipes and judge prompt exist.
        post_migrate.connect(ensure_default_recipes, sender=self, dispatch_uid="r1studio-default-recipes")


def ensure_default_recipes(**kwargs):
    from apps.rollouts.models import JudgePrompt, RewardRecipe
    from workers.rewards.judge import DEFAULT_PROMPT
    from workers.rewards.recipes import DEFAULT_RECIPES

    for name, spec in DEFAULT_RECIPES.items():
        RewardRecipe.save_spec(name, spec, description="Built in")
    JudgePrompt.save_text("default", DEFAULT_PROMPT, description="Built in: the final answer against the reference")
