"""R1-Zero in miniature, on a CPU: the tiny model, a short SFT on the answer format, GRPO, and
held-out pass@1 before and after, each step a real job on the worker.

1. A randomly initialised tiny Qwen3 (workers.generation.tiny) is the base.
2. SFT job: 300 steps of worked answers to one- to three-step word problems in the R1-Zero format
   (`<think> 12 + 5 = 17 </think> <answer> 17 </answer>`): it teaches the format, and leaves the
   model right on only a few percent of single-digit sums.
3. Evaluation jobs on 200 held-out single-digit sums: pass@1 before, at temperature 0.6 (top-p
   0.95, the R1 report's setting) and at 1.0 (GRPO's sampling temperature).
4. GRPO job on other single-digit sums with r1-zero-math (accuracy + format): 400 steps of the
   launch form's CPU preset (LR 3e-4 with 10 warmup steps and a linear decay, G=8, 64 completions a
   step), every completion stored: RL teaches the sums SFT did not.
5. The same evaluations again: pass@1 after.

benchmarks/grpo_sweep.py chose the task and the optimiser (benchmarks/RESULTS.md): on one-step
problems over numbers up to 40, 100 GRPO steps at LR 1e-4 or 3e-4 left held-out pass@1 at 0.6
where it was, and a constant LR of 1e-3 collapsed the model. 400 steps rather than 200: seed 0
doubled only with them, and the chain still takes about 8 minutes on a 2-core CPU.
"""

import time
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Avg, IntegerField
from django.db.models.functions import Cast

from apps.core.bulk import bulk_insert
from apps.datasets.models import Dataset, Example, ModelVersion, Prompt
from apps.datasets.versions import freeze_version
from apps.jobs import launching
from apps.jobs.models import Job
from apps.rollouts.models import RewardRecipe, Rollout
from apps.training.forms import CPU_PRESETS
from apps.training.models import Evaluation, StepMetric
from workers.generation.tiny import build_tiny_model, worked_completion
from workers.synthetic import arithmetic_dataset, small_sums_dataset

ONE_STEP = (1, 1)
TASKS = {
    "one-step": lambda n, seed: arithmetic_dataset(n, seed=seed, steps=ONE_STEP),
    "small-sums": small_sums_dataset,  # single-digit sums: the tiny model's format SFT leaves them mostly wrong
}


@dataclass
class MiniatureConfig:
    sft_steps: int = 300
    grpo_steps: int = 400
    heldout: int = 200
    train_prompts: int = 3000
    eval_samples: int = 4  # pass@1 is the mean over these samples per prompt
    # GRPO samples at temperature 1 (as the report's RL does); the report evaluates at 0.6.
    eval_temperatures: tuple = (1.0, 0.6)
    seed: int = 0
    name: str = "miniature"
    task: str = "small-sums"  # the GRPO and held-out problems (TASKS); the format SFT is always the 1–3-step mix


def run_miniature(storage_dir, config: MiniatureConfig | None = None, user=None, log=print,
                  timeout_s: float = 3600) -> dict:
    """Run the chain on the worker and wait for it; returns the figures."""
    config = config or MiniatureConfig()
    started = time.monotonic()
    base = _base_model(storage_dir, config)
    format_version, train, heldout = _datasets(config)
    run = {"base": base.pk}

    def step(kind, params, label):
        job = launching.launch(kind, params, user=user, label=f"{config.name}: {label}")
        log(f"{label}: job #{job.pk} queued")
        job = _wait(job, timeout_s - (time.monotonic() - started))
        if job.status != Job.Status.SUCCEEDED:
            raise RuntimeError(f"{label} (job #{job.pk}) {job.status}: {job.error[:2000]}")
        log(f"{label}: done in {(job.finished_at - job.started_at).total_seconds():.0f} s")
        return job

    sft = step("sft", tiny_model_preset("sft") | {
        "model_version": base.pk, "dataset_version": format_version.pk, "format": "r1_zero", "stage": "cold_start",
        "max_steps": config.sft_steps, "warmup_steps": config.sft_steps // 10, "save_steps": 0,
        "seed": config.seed, "output_name": f"{config.name}-format-sft",
    }, "SFT on the answer format")
    formatted = ModelVersion.objects.get(pk=sft.result["model_version"])

    def evaluate(model, when):
        return {temperature: step("evaluate", {
            "model_version": model.pk, "dataset": heldout.pk, "n": config.eval_samples, "pass_k": config.eval_samples,
            "temperature": temperature, "top_p": 1.0 if temperature == 1.0 else 0.95, "max_tokens": 64,
            "batch_size": 50, "seed": config.seed,
        }, f"held-out pass@1 at temperature {temperature} {when} GRPO") for temperature in config.eval_temperatures}

    before = evaluate(formatted, "before")
    grpo = step("grpo", tiny_model_preset("grpo") | {
        "model_version": formatted.pk, "dataset": train.pk, "recipe": RewardRecipe.latest("r1-zero-math").pk,
        "stage": "reasoning_rl", "max_steps": config.grpo_steps, "top_p": 1.0, "save_steps": 100,
        "seed": config.seed, "output_name": f"{config.name}-grpo",
    }, "GRPO")
    trained = ModelVersion.objects.get(pk=grpo.result["model_version"])
    after = evaluate(trained, "after")
    pass_at_1 = {t: (Evaluation.objects.get(job=before[t]).metrics["pass@1"],
                     Evaluation.objects.get(job=after[t]).metrics["pass@1"]) for t in config.eval_temperatures}
    return run | {
        "pass@1": pass_at_1,  # temperature → (before, after)
        "minutes": round((time.monotonic() - started) / 60, 1),
        "jobs": {"sft": sft.pk, "grpo": grpo.pk, "evaluations": [j.pk for j in (*before.values(), *after.values())]},
        "curves": curve_summary(grpo),
    }


def tiny_model_preset(kind: str) -> dict:
    """The launch form's CPU preset for the tiny model (benchmarks/RESULTS.md), but where it runs is the
    worker's default."""
    return {k: v for k, v in CPU_PRESETS[kind].items() if k != "accelerate_config"}


def curve_summary(job: Job, points: int = 6) -> list[dict]:
    """Reward, accuracy, response length and reflection-word rate, each averaged over `points` equal
    blocks of steps (one step's 64 completions are too noisy to read alone); `step` is a block's last."""
    metrics = list(StepMetric.objects.filter(job=job).order_by("step").values_list("step", "metrics"))
    reflecting = dict(Rollout.objects.filter(job=job).values("step").order_by("step").annotate(
        share=Avg(Cast("has_reflection", IntegerField()))).values_list("step", "share"))
    blocks = [metrics[i * len(metrics) // points:(i + 1) * len(metrics) // points] for i in range(points)]

    def mean(block, value):
        values = [v for v in map(value, block) if v is not None]
        return sum(values) / len(values) if values else None

    return [{"step": block[-1][0], "reward": mean(block, lambda m: m[1].get("reward")),
             "accuracy": mean(block, lambda m: m[1].get("rewards/math_accuracy/mean")),
             "length": mean(block, lambda m: m[1].get("completions/mean_length")),
             "reflection": mean(block, lambda m: reflecting.get(m[0]))} for block in blocks if block]


def _wait(job: Job, timeout_s: float) -> Job:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.is_finished:
            return job
        time.sleep(1.0)
    raise TimeoutError(f"job #{job.pk} still {job.status} after the chain's time ran out")


def _base_model(storage_dir, config: MiniatureConfig) -> ModelVersion:
    name = f"{config.name}-base"
    existing = ModelVersion.objects.filter(name=name).first()
    if existing:
        return existing
    path = build_tiny_model(storage_dir / name, seed=config.seed, sft_steps=0)
    return ModelVersion.objects.create(name=name, uri=str(path), stage=ModelVersion.Stage.BASE,
                                       config={"recipe": "tiny-qwen3", "seed": config.seed})


def _datasets(config: MiniatureConfig):
    """Format examples (frozen), GRPO prompts and held-out prompts: three disjoint sets of problems."""
    problems = TASKS[config.task]
    heldout_problems = problems(config.heldout, seed=10_000 + config.seed)
    seen = {p["question"] for p in heldout_problems}
    train_problems = [p for p in problems(config.train_prompts, seed=20_000 + config.seed)
                      if p["question"] not in seen]
    seen |= {p["question"] for p in train_problems}
    # Worked answers for the format SFT, over the mix of one- to three-step problems.
    format_problems = [p for p in arithmetic_dataset(config.sft_steps * 8, seed=30_000 + config.seed)
                       if p["question"] not in seen]
    with transaction.atomic():
        train = _prompts(f"{config.name}-grpo-prompts", train_problems)
        heldout = _prompts(f"{config.name}-heldout", heldout_problems)
        format_set, created = Dataset.objects.get_or_create(
            name=f"{config.name}-format", defaults={"description": "Worked answers in the R1-Zero format"})
        version = format_set.versions.first()
        if created or version is None:
            examples = [Example(dataset=format_set, source="manual",
                                messages=Example.chat(p["question"], worked_completion(p)))
                        for p in format_problems]
            for example in examples:
                example.content_hash = Example.hash_for(example.messages)
            Example.objects.bulk_create(examples, ignore_conflicts=True)
            version = freeze_version(format_set, list(format_set.examples.order_by("id")),
                                     note="Worked one- to three-step arithmetic answers", via="cli")
    return version, train, heldout


def _prompts(name: str, problems: list[dict]) -> Dataset:
    dataset, created = Dataset.objects.get_or_create(name=name, defaults={"description": "One-step arithmetic"})
    if created:
        bulk_insert(Prompt, [{"dataset_id": dataset.pk, "question": p["question"], "reference_answer": p["answer"],
                              "domain": "math", "language": "en",
                              "content_hash": Prompt.hash_for(p["question"], p["answer"], [])}
                             for p in problems])
    return dataset
