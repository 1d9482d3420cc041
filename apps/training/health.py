"""Run-health alerts on the dashboard and the job page: workers.training.health's rules over the
dashboard's per-step series, each alert with example rollouts from the steps that raised it."""

from django.db.models import Q
from django.db.models.functions import Substr
from django.urls import reverse

from apps.rollouts.models import Rollout
from workers.training import health
from workers.training.health import Step

EXAMPLES = 3
ANSWER_CHARS = 120

# Which rollouts of the alert's steps show the problem best.
EXAMPLE_FILTERS = {
    "format_over_accuracy": (Q(format_ok=True, is_correct=False), "id"),
    "length_collapse": (Q(), "length_chars"),
    "length_cap": (Q(finish_reason=Rollout.FinishReason.LENGTH), "id"),
    "dominating_component": (Q(is_correct=False), "-total_reward"),
}


def steps_from_series(xs: list, series: dict[str, list], weights: dict[str, float]) -> list[Step]:
    """The rules' table from the dashboard's series (keys as dashboard_data names them)."""

    def at(key, i):
        values = series.get(key)
        return values[i] if values else None

    steps = []
    for i, x in enumerate(xs):
        components = {name: at(f"reward/{name}", i) * weight for name, weight in weights.items()
                      if at(f"reward/{name}", i) is not None}
        steps.append(Step(step=x, accuracy=at("accuracy", i), format=at("format_ok", i),
                          length=at("response_length", i), truncated=at("truncated", i), entropy=at("entropy", i),
                          kl=at("kl", i), clip_ratio=at("clip_ratio/region_mean", i),
                          zero_std_groups=at("frac_reward_zero_std", i), components=components,
                          samples=at("rollouts", i)))
    return steps


def alerts_with_examples(job, steps: list[Step]) -> list[dict]:
    """The run's alerts, JSON-ready, each with up to EXAMPLES rollouts from its steps."""
    alerts = []
    for alert in health.check(steps):
        where, order = EXAMPLE_FILTERS.get(alert.rule, (Q(), "id"))
        examples = (Rollout.objects.filter(job=job, step__in=alert.steps).filter(where).order_by(order)
                    .annotate(answer_start=Substr("answer", 1, ANSWER_CHARS))
                    .values("id", "step", "total_reward", "answer_start")[:EXAMPLES])
        alerts.append(alert.as_dict() | {"examples": [
            {"id": r["id"], "step": r["step"], "reward": r["total_reward"], "answer": r["answer_start"],
             "url": reverse("rollout_detail", args=[r["id"]])} for r in examples]})
    return alerts
