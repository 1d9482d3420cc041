"""GRPO preset sweep on the tiny model: which optimiser settings improve held-out pass@1.

    python benchmarks/grpo_sweep.py [--sft-steps N] [--grpo-steps M] [--variants a,b,...] [--seed S]

Through the real job system, run in this process (no worker), on a scratch Postgres database
(r1bench): the miniature's base model and datasets, one format SFT, held-out pass@1 before (200
problems of --task × 4 samples at temperature 0.6, top-p 0.95, and at 1.0), then GRPO from that
same checkpoint once per variant (each a change to the CPU preset, one knob at a time) with pass@1
after on the same held-out prompts. Prints one row per variant: pass@1 before and after at both
temperatures, the last block's training accuracy and format, and the wall time of the GRPO job.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_db import DEFAULT_URL, setup_django  # noqa: E402

# Each variant changes the launch form's CPU preset (apps/training/forms.py: LR 3e-4 linear with 10
# warmup steps, G=8, 64 completions a step, DAPO token averaging, no KL) one knob at a time.
VARIANTS = {
    "base": {},
    "lr1e-3-const": {"learning_rate": 1e-3, "lr_scheduler": "constant_with_warmup", "warmup_steps": 0},
    "lr1e-3-warm": {"learning_rate": 1e-3},
    "lr6e-4": {"learning_rate": 6e-4},
    "lr1e-4": {"learning_rate": 1e-4},
    "lr3e-5": {"learning_rate": 3e-5},
    "cosine": {"lr_scheduler": "cosine"},
    "constant": {"lr_scheduler": "constant_with_warmup"},
    "no-warmup": {"warmup_steps": 0},
    "beta0.04": {"beta": 0.04},
    "g16": {"num_generations": 16, "batch_size": 128},
    "g16-same-batch": {"num_generations": 16},  # 4 prompts a step instead of 8: the same cost
    "g4": {"num_generations": 4},
    "batch32": {"batch_size": 32},
}
TEMPERATURES = (0.6, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sft-steps", type=int, default=300)
    parser.add_argument("--grpo-steps", type=int, default=100)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heldout", type=int, default=200)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--task", default="small-sums", help="The GRPO and held-out problems: one-step or small-sums")
    parser.add_argument("--train-prompts", type=int, default=3000)
    parser.add_argument("--from-model", default="", help="The format-SFT model version of an earlier run: skip the SFT")
    args = parser.parse_args()
    os.environ.setdefault("R1_STORAGE_ROOT", tempfile.mkdtemp(prefix="grpo-sweep-"))
    setup_django(os.environ.get("DATABASE_URL") or DEFAULT_URL)

    from django.conf import settings

    from apps.datasets.models import ModelVersion
    from apps.jobs import launching
    from apps.rollouts.models import RewardRecipe
    from apps.training.miniature import MiniatureConfig, _base_model, _datasets, tiny_model_preset
    from apps.training.models import Evaluation, StepMetric

    config = MiniatureConfig(sft_steps=args.sft_steps, seed=args.seed, heldout=args.heldout, task=args.task,
                             train_prompts=args.train_prompts, name=f"sweep-{int(time.time())}")
    base = _base_model(settings.STORAGE_ROOT / "models", config)
    format_version, train, heldout = _datasets(config)

    def pass_at_1(model) -> dict:
        found = {}
        for temperature in TEMPERATURES:
            job = launching.run_here("evaluate", {
                "model_version": model.pk, "dataset": heldout.pk, "n": args.samples, "pass_k": args.samples,
                "temperature": temperature, "top_p": 0.95 if temperature < 1 else 1.0, "max_tokens": 64,
                "batch_size": 50, "seed": args.seed}, label=f"eval {model.name} t={temperature}")
            found[temperature] = Evaluation.objects.get(job=job).metrics["pass@1"]
        return found

    started = time.monotonic()
    if args.from_model:
        formatted = ModelVersion.objects.get(name=args.from_model)
    else:
        sft = launching.run_here("sft", tiny_model_preset("sft") | {
            "model_version": base.pk, "dataset_version": format_version.pk, "format": "r1_zero",
            "stage": "cold_start", "max_steps": args.sft_steps, "warmup_steps": args.sft_steps // 10,
            "save_steps": 0, "seed": args.seed, "output_name": f"{config.name}-sft"}, label="format SFT")
        formatted = ModelVersion.objects.get(pk=sft.result["model_version"])
    before = pass_at_1(formatted)
    print(f"SFT model {formatted.name}: {time.monotonic() - started:.0f} s; pass@1 before {before}", flush=True)

    rows = []
    for name in args.variants.split(","):
        started = time.monotonic()
        job = launching.run_here("grpo", tiny_model_preset("grpo") | VARIANTS[name] | {
            "model_version": formatted.pk, "dataset": train.pk, "recipe": RewardRecipe.latest("r1-zero-math").pk,
            "stage": "reasoning_rl", "max_steps": args.grpo_steps, "top_p": 1.0, "save_steps": 0, "seed": args.seed,
            "output_name": f"{config.name}-grpo-{name}"}, label=f"GRPO {name}")
        seconds = time.monotonic() - started
        after = pass_at_1(ModelVersion.objects.get(pk=job.result["model_version"]))
        last = [m.metrics for m in StepMetric.objects.filter(job=job).order_by("-step")[:10]]
        accuracy, fmt = (sum(m.get(key, 0.0) for m in last) / max(1, len(last))
                         for key in ("rewards/math_accuracy/mean", "rewards/format/mean"))
        rows.append((name, after, accuracy, fmt, seconds))
        print(f"  {name}: after {after}, {seconds:.0f} s", flush=True)

    print()
    print(f"SFT {args.sft_steps} steps, GRPO {args.grpo_steps} steps, seed {args.seed}; pass@1 on {args.heldout} "
          f"held-out prompts × {args.samples} samples. Before GRPO: t=0.6 {before[0.6]:.3f}, t=1.0 {before[1.0]:.3f}.")
    print("| variant | change | pass@1 t=0.6 after (×before) | pass@1 t=1.0 after (×before) "
          "| train accuracy, last 10 steps | format, last 10 | GRPO s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, after, accuracy, fmt, seconds in rows:
        change = ", ".join(f"{k}={v}" for k, v in VARIANTS[name].items()) or "—"
        print(f"| {name} | {change} | {after[0.6]:.3f} ({after[0.6] / max(before[0.6], 1e-9):.2f}) "
              f"| {after[1.0]:.3f} ({after[1.0] / max(before[1.0], 1e-9):.2f}) | {accuracy:.3f} | {fmt:.3f} "
              f"| {seconds:.0f} |")


if __name__ == "__main__":
    main()
