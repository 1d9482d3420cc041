"""The run dashboard of one job: per-step curves of its rollouts and the signs of reward hacking.

Plain functions over the database (no request objects), shared by the page, its
JSON and its CSV. All per-step figures of the rollouts, flag counts included,
come from one GROUP BY query over the job's slice: five queries in all, however
many steps. That query still reads every rollout of the job, so its time grows
with the run; at R1 scale (tens of millions per run) a per-step rollup written
with the rollouts is the next step. The trainer's own figures (KL, loss...)
are merged in from StepMetric.

A job whose rollouts are all at step 0 (generation, evaluation) has no steps
to draw along, so its rollouts are grouped into up to 50 buckets of equal id
ranges, in the order they were written: a live generation job still draws curves.
"""

import math

from django.db.models import Avg, Count, ExpressionWrapper, F, IntegerField, Max, Min, Q, Value
from django.db.models.functions import Substr
from django.db.models.lookups import GreaterThan
from django.urls import reverse

from apps.jobs.models import Job
from apps.rollouts.models import Rollout, reward_component_value
from apps.rollouts.tokens import entropy_by_step
from apps.training import health
from apps.training.models import Evaluation, StepMetric
from workers.evaluation import mean_interval
from workers.rewards import shape

MAX_BUCKETS = 50
HIGH_REWARD_SHARE = 0.8  # "high reward" by default: at least 80% of the job's best total reward
MIXED_LANGUAGE_BELOW = 0.95  # language consistency under this counts as mixing languages
RECENT_FLAGGED = 50
FLAG_TABLE_ROWS = 100  # the page's table; the CSV has every step
ANSWER_PREVIEW_CHARS = 120
TRAINER_METRICS = {"reward_std": "reward std (trainer)", "kl": "KL", "loss": "loss", "entropy": "entropy",
                   "frac_reward_zero_std": "groups with all-equal rewards (no signal)",
                   "clip_ratio/region_mean": "clipped-token ratio"}

# Each bit of workers.rewards.shape gets a stable key for JSON and CSV; a bit added there later still shows.
_SHAPE_KEYS = {shape.SHORT_REASONING: "short_reasoning", shape.REPEATED_TEXT: "repeated_text",
               shape.OUTSIDE_TEMPLATE: "outside_template"}
SHAPE_FLAGS = [(bit, _SHAPE_KEYS.get(bit, f"shape_bit_{bit}"), label) for bit, label in shape.FLAG_LABELS.items()]
LENGTH_CAP = ("length_cap", "length at the cap")  # finish reason "length": needs no bit


def parse_min_reward(raw: str | None) -> float | None:
    """The `?min_reward=` override; None means the default rule. ValueError with a message if malformed."""
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"min_reward must be a number, not {raw[:50]!r}") from None
    if not math.isfinite(value):
        raise ValueError("min_reward must be a finite number")
    return value


def dashboard_data(job: Job, min_reward: float | None = None) -> dict:
    """Everything the dashboard shows, JSON-ready (see `series_rows` for the CSV)."""
    bounds = Rollout.objects.filter(job=job).aggregate(
        rollouts=Count("id"), first_id=Min("id"), last_id=Max("id"), last_step=Max("step"),
        best_reward=Max("total_reward"),
    )
    threshold, rule = _high_reward_threshold(bounds["best_reward"], min_reward)
    by_bucket = bounds["rollouts"] > 0 and bounds["last_step"] == 0
    weights = _reward_weights(bounds["last_id"])
    components = list(weights)
    rows = _grouped_rows(job, bounds, by_bucket, components, threshold)

    if by_bucket:
        # x is how many rollouts were written up to the end of the bucket: it reads as "rollouts so far".
        written, xs = 0, []
        for row in rows:
            written += row["rollouts"]
            xs.append(written)
        x_axis = {"key": "rollouts_written", "label": "rollouts in the order written"}
        trainer = evaluations = {}  # a trainer's figures are per step and do not line up with buckets
    else:
        trainer = _trainer_metrics(job)
        evaluations = _checkpoint_evaluations(job)
        xs = sorted({row["x"] for row in rows} | set(trainer) | set(evaluations))
        x_axis = {"key": "step", "label": "training step"}
    rows_at = dict(zip(xs, rows)) if by_bucket else {row["x"]: row for row in rows}

    series = _rollout_series(xs, rows_at, components) + _trainer_series(xs, trainer)
    series += _evaluation_series(xs, evaluations)
    if not by_bucket:
        series += _token_entropy_series(xs, entropy_by_step(job.pk))
    series += _flag_series(xs, rows_at)
    present = {s["key"] for s in series if any(v is not None for v in s["values"])}
    steps = [] if by_bucket else health.steps_from_series(xs, {s["key"]: s["values"] for s in series}, weights)
    return {
        "job": {"id": job.pk, "kind": job.kind, "label": job.label or job.kind, "status": job.status,
                "live": job.status in (Job.Status.QUEUED, Job.Status.RUNNING)},
        "rollouts": bounds["rollouts"],
        "x": x_axis | {"values": xs},
        "series": series,
        "charts": [chart for chart in _charts(series) if any(key in present for key in chart["series"])],
        "flags": _flags(job, xs, rows_at, threshold, rule, bounds),
        "alerts": health.alerts_with_examples(job, steps),
    }


def series_rows(data: dict) -> tuple[list[str], list[list]]:
    """The CSV: a header (x, then one column per series) and one row per step or bucket."""
    header = [data["x"]["key"]] + [s["key"] for s in data["series"]]
    rows = [[x] + [s["values"][i] for s in data["series"]] for i, x in enumerate(data["x"]["values"])]
    return header, rows


def _high_reward_threshold(best_reward: float | None, min_reward: float | None) -> tuple[float | None, str]:
    if min_reward is not None:
        return min_reward, f"total reward ≥ {min_reward:g} (min_reward from the address)"
    if best_reward is None:
        return None, "no rollout has a reward yet"
    if best_reward <= 0:
        return None, f"no rollout earned a positive reward (best {best_reward:g}); set min_reward to choose one"
    threshold = HIGH_REWARD_SHARE * best_reward
    return threshold, f"total reward ≥ {threshold:g} ({HIGH_REWARD_SHARE:.0%} of the job's best, {best_reward:g})"


def _reward_weights(last_id: int | None) -> dict[str, float]:
    """The components of the latest rollout's recipe and their weights (a pk lookup, not a scan)."""
    if last_id is None:
        return {}
    rewards = Rollout.objects.filter(pk=last_id).values_list("rewards", flat=True).first()
    if not isinstance(rewards, dict):
        return {}
    return {name: spec.get("weight", 1.0) if isinstance(spec, dict) else 1.0 for name, spec in sorted(rewards.items())}


def _grouped_rows(job, bounds, by_bucket, components, threshold) -> list[dict]:
    """The one GROUP BY query: counts and means per step (or bucket), flag counts included."""
    if not bounds["rollouts"]:
        return []
    if by_bucket:
        span = bounds["last_id"] - bounds["first_id"] + 1
        buckets = min(MAX_BUCKETS, bounds["rollouts"])
        # Integer arithmetic on both Postgres and SQLite: equal id ranges, 0 .. buckets-1.
        x = ExpressionWrapper((F("id") - Value(bounds["first_id"])) * Value(buckets) / Value(span),
                              output_field=IntegerField())
    else:
        x = F("step")
    aggregates = {
        "rollouts": Count("id"),
        "reward_mean": Avg("total_reward"),
        "correct": Count("id", filter=Q(is_correct=True)),
        "graded": Count("is_correct"),
        "formatted": Count("id", filter=Q(format_ok=True)),
        "format_checked": Count("format_ok"),
        "tokens_mean": Avg("completion_tokens"),
        "chars_mean": Avg("length_chars"),
        "truncated": Count("id", filter=Q(finish_reason=Rollout.FinishReason.LENGTH)),
        "reflecting": Count("id", filter=Q(has_reflection=True)),
        "mixing": Count("id", filter=Q(language_consistency__lt=MIXED_LANGUAGE_BELOW)),
        "language_checked": Count("language_consistency"),
    }
    # Aliases by position: a component is named by whoever wrote the recipe, which need not make a SQL alias.
    for i, name in enumerate(components):
        aggregates[f"component_{i}"] = Avg(reward_component_value(name))
    if threshold is not None:
        high = Q(total_reward__gte=threshold)
        aggregates["high_reward"] = Count("id", filter=high)
        for bit, key, _label in SHAPE_FLAGS:
            aggregates[f"flag_{key}"] = Count("id", filter=high & Q(GreaterThan(F("shape_flags").bitand(bit), 0)))
        aggregates[f"flag_{LENGTH_CAP[0]}"] = Count("id", filter=high & Q(finish_reason=Rollout.FinishReason.LENGTH))
    # Only the rows the bounds saw: a live job keeps writing, and a newer id would fall past the last bucket.
    rollouts = Rollout.objects.filter(job=job, id__range=(bounds["first_id"], bounds["last_id"]))
    return list(rollouts.annotate(x=x).values("x").order_by("x").annotate(**aggregates))


def _charts(series: list[dict]) -> list[dict]:
    """Which series share a chart; `share` charts run from 0 to 1. Keys a job lacks are left out."""
    keys = [s["key"] for s in series]
    components = [key for key in keys if key.startswith("reward/")]
    flags = [key for key in keys if key.startswith("flag/")]
    charts = [
        {"id": "reward", "title": "Reward: total and per component", "series": ["reward_mean", *components,
                                                                               "reward_std"]},
        {"id": "accuracy", "title": "Accuracy and format", "series": ["accuracy", "format_ok"], "share": True},
        {"id": "length", "title": "Mean response length", "series": ["response_length"]},
        {"id": "truncated", "title": "Truncated at the length cap", "series": ["truncated"], "share": True},
        {"id": "reflection", "title": "Reflection words (the \u201caha\u201d tracker)", "series": ["reflection"],
         "share": True},
        {"id": "language", "title": "Language mixing", "series": ["language_mixing"], "share": True},
        {"id": "heldout", "title": "Held-out evaluations of the checkpoints (95% interval of pass@1 dashed)",
         "series": ["eval/pass@1", "eval/pass@1 low", "eval/pass@1 high", "eval/pass@k", "eval/cons@k"],
         "share": True},
        {"id": "trainer", "title": "Trainer: KL, loss and token entropy", "series": ["kl", "loss", "entropy"]},
        {"id": "signal", "title": "Groups with no signal, clipped tokens", "series": [
            "frac_reward_zero_std", "clip_ratio/region_mean"], "share": True},
        {"id": "flags", "title": "High-reward rollouts with a suspicious shape", "series": ["high_reward", *flags]},
    ]
    if "token_entropy/p50" in keys:  # the run stored token traces
        charts.append({"id": "token_entropy", "title": "Token entropy: the trainer's mean, and the spread of each "
                       "rollout's mean", "series": ["entropy", "token_entropy/p10", "token_entropy/p50",
                                                    "token_entropy/p90"]})
    for chart in charts:
        chart["series"] = [key for key in chart["series"] if key in keys]
        chart.setdefault("share", False)
    return charts


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _rollout_series(xs, rows_at, components) -> list[dict]:
    def column(pick):
        return [pick(rows_at[x]) if x in rows_at else None for x in xs]

    # One length unit for the whole job: mixing token and character means on one curve would mislead.
    has_tokens = any(row["tokens_mean"] is not None for row in rows_at.values())
    length = (
        {"key": "response_length", "label": "mean completion tokens",
         "values": column(lambda r: _rounded(r["tokens_mean"]))}
        if has_tokens else
        {"key": "response_length", "label": "mean response length (characters: no token counts)",
         "values": column(lambda r: _rounded(r["chars_mean"]))}
    )
    return [
        {"key": "rollouts", "label": "rollouts", "values": column(lambda r: r["rollouts"])},
        {"key": "reward_mean", "label": "mean total reward", "values": column(lambda r: _rounded(r["reward_mean"]))},
        *[{"key": f"reward/{name}", "label": f"{name} (mean)",
           "values": column(lambda r, i=i: _rounded(r[f"component_{i}"]))} for i, name in enumerate(components)],
        {"key": "accuracy", "label": "accuracy", "values": column(lambda r: _share(r["correct"], r["graded"]))},
        {"key": "format_ok", "label": "format ok",
         "values": column(lambda r: _share(r["formatted"], r["format_checked"]))},
        length,
        {"key": "truncated", "label": "truncated (finish reason length)",
         "values": column(lambda r: _share(r["truncated"], r["rollouts"]))},
        {"key": "reflection", "label": "reflection-word rate",
         "values": column(lambda r: _share(r["reflecting"], r["rollouts"]))},
        {"key": "language_mixing", "label": f"language mixing (consistency < {MIXED_LANGUAGE_BELOW})",
         "values": column(lambda r: _share(r["mixing"], r["language_checked"]))},
    ]


def _trainer_metrics(job) -> dict[int, dict]:
    """{step: {name: value}} of the trainer's figures we draw; a NaN loss (a diverged run) becomes a gap."""
    found = {}
    for step, metrics in StepMetric.objects.filter(job=job).values_list("step", "metrics"):
        if not isinstance(metrics, dict):
            continue
        figures = {name: metrics[name] for name in TRAINER_METRICS if _is_number(metrics.get(name))}
        if figures:
            found[step] = figures
    return found


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _trainer_series(xs, trainer) -> list[dict]:
    names = [name for name in TRAINER_METRICS if any(name in figures for figures in trainer.values())]
    return [{"key": name, "label": TRAINER_METRICS[name],
             "values": [_rounded(trainer.get(x, {}).get(name)) for x in xs]} for name in names]


def _checkpoint_evaluations(job) -> dict[int, dict]:
    """{step: metrics} of the newest evaluation of each model version this job saved (its checkpoints and
    final model), with pass@1's 95% interval over the prompts (workers.evaluation.mean_interval)."""
    found = {}
    evaluations = Evaluation.objects.filter(model_version__produced_by=job).select_related("model_version")
    for evaluation in evaluations.order_by("id"):
        metrics, k = evaluation.metrics, evaluation.k
        interval = mean_interval([p["correct"] / p["n"] for p in evaluation.per_prompt.values() if p.get("n")])
        found[evaluation.model_version.step or 0] = {
            "eval/pass@1": metrics.get("pass@1"),
            "eval/pass@1 low": interval and interval.low, "eval/pass@1 high": interval and interval.high,
            "eval/pass@k": next((v for name, v in metrics.items() if name.startswith("pass@") and name != "pass@1"),
                                None),
            "eval/cons@k": metrics.get(f"cons@{k}")}
    return found


EVALUATION_LABELS = {"eval/pass@1": "held-out pass@1", "eval/pass@1 low": "pass@1, 95% low",
                     "eval/pass@1 high": "pass@1, 95% high", "eval/pass@k": "held-out pass@k",
                     "eval/cons@k": "held-out cons@k"}


def _evaluation_series(xs, evaluations) -> list[dict]:
    if not evaluations:
        return []
    return [{"key": key, "label": label, "values": [_rounded(evaluations.get(x, {}).get(key)) for x in xs],
             "dashed": key.endswith(("low", "high")), "sparse": True}
            for key, label in EVALUATION_LABELS.items()]


def _token_entropy_series(xs, by_step: dict) -> list[dict]:
    """Quantiles over a step's rollouts of their mean token entropy (the stored token traces), where there are any."""
    if not by_step["steps"]:
        return []
    at = {step: i for i, step in enumerate(by_step["steps"])}
    return [{"key": f"token_entropy/{name}", "label": f"rollouts' mean token entropy, {name}",
             "values": [_rounded(by_step["mean_entropy"][name][at[x]]) if x in at else None for x in xs]}
            for name in ("p10", "p50", "p90")]


def _flag_columns() -> list[tuple[str, str]]:
    return [(key, label) for _bit, key, label in SHAPE_FLAGS] + [LENGTH_CAP]


def _flag_series(xs, rows_at) -> list[dict]:
    def counts(key):
        return [rows_at[x].get(key) if x in rows_at else None for x in xs]

    series = [{"key": "high_reward", "label": "high-reward rollouts", "values": counts("high_reward")}]
    series += [{"key": f"flag/{key}", "label": f"high reward, {label}", "values": counts(f"flag_{key}")}
               for key, label in _flag_columns()]
    return series


def _flags(job, xs, rows_at, threshold, rule, bounds) -> dict:
    columns = _flag_columns()
    table = []
    for x in reversed(xs):  # newest first
        row = rows_at.get(x)
        if row is None or threshold is None:
            continue
        counts = [row[f"flag_{key}"] for key, _label in columns]
        if any(counts):
            table.append({"x": x, "high_reward": row["high_reward"], "counts": counts})
    return {
        "min_reward": _rounded(threshold),
        "rule": rule,
        "columns": [{"key": key, "label": label} for key, label in columns],
        "rows": table[:FLAG_TABLE_ROWS],
        "rows_total": len(table),
        "recent": _recent_flagged(job, threshold, bounds),
    }


def _recent_flagged(job, threshold, bounds) -> list[dict]:
    if threshold is None or not bounds["rollouts"]:
        return []
    suspicious = Q(shape_flags__gt=0) | Q(finish_reason=Rollout.FinishReason.LENGTH)
    recent = (
        Rollout.objects.filter(job=job, total_reward__gte=threshold, id__range=(bounds["first_id"], bounds["last_id"]))
        .filter(suspicious).order_by("-id")
        # Only the answer's start: a completion can be megabytes.
        .annotate(answer_start=Substr("answer", 1, ANSWER_PREVIEW_CHARS))
        .values("id", "step", "total_reward", "shape_flags", "finish_reason", "answer_start")[:RECENT_FLAGGED]
    )
    found = []
    for r in recent:
        labels = shape.flag_labels(r["shape_flags"])
        if r["finish_reason"] == Rollout.FinishReason.LENGTH:
            labels.append(LENGTH_CAP[1])
        found.append({"id": r["id"], "step": r["step"], "reward": _rounded(r["total_reward"]), "flags": labels,
                      "answer": r["answer_start"], "url": reverse("rollout_detail", args=[r["id"]])})
    return found
