"""Record real GRPO runs for the run-health rules: one that collapses, one that learns.

    python benchmarks/grpo_health_runs.py [--steps N] [--out tests/training/recorded]

On the tiny model, through the real job system run in this process (no worker): the miniature's
base model and format SFT, then GRPO twice from that checkpoint with the same prompts and recipe
(r1-zero-math), differing only in the optimiser:
- collapsing: LR 1e-3, constant, no warmup (the CPU preset that made the miniature worse);
- healthy: LR 1e-4, linear decay, 10 warmup steps.
Each run's dashboard data (per-step rollout figures and the trainer's metrics, as the dashboard
computes them) is written to <out>/grpo_<name>.json, the fixtures the health-rule tests read.
It uses a scratch Postgres database (r1bench, created and migrated) and STORAGE_ROOT under /tmp.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_db import DEFAULT_URL, setup_django  # noqa: E402

RUNS = {
    "collapsing": {"learning_rate": 1e-3, "lr_scheduler": "constant_with_warmup", "warmup_steps": 0},
    "healthy": {"learning_rate": 1e-4, "lr_scheduler": "linear", "warmup_steps": 10},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--sft-steps", type=int, default=900)
    parser.add_argument("--out", default=str(ROOT / "tests" / "training" / "recorded"))
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--from-model", default="", help="A format-SFT model version of an earlier run: skip the SFT")
    args = parser.parse_args()
    os.environ.setdefault("R1_STORAGE_ROOT", tempfile.mkdtemp(prefix="grpo-health-"))
    setup_django(os.environ.get("DATABASE_URL") or DEFAULT_URL)

    from django.conf import settings

    from apps.datasets.models import ModelVersion
    from apps.jobs import launching
    from apps.rollouts.models import RewardRecipe
    from apps.training.dashboard import dashboard_data
    from apps.training.miniature import MiniatureConfig, _base_model, _datasets, tiny_model_preset

    config = MiniatureConfig(sft_steps=args.sft_steps, name=f"health-{int(time.time())}")
    base = _base_model(settings.STORAGE_ROOT / "models", config)
    format_version, train, _heldout = _datasets(config)
    if args.from_model:
        formatted = ModelVersion.objects.get(name=args.from_model)
    else:
        started = time.monotonic()
        sft = launching.run_here("sft", tiny_model_preset("sft") | {
            "model_version": base.pk, "dataset_version": format_version.pk, "format": "r1_zero",
            "stage": "cold_start", "max_steps": config.sft_steps, "warmup_steps": config.sft_steps // 10,
            "save_steps": 0, "seed": 0, "output_name": f"{config.name}-sft"}, label="format SFT")
        formatted = ModelVersion.objects.get(pk=sft.result["model_version"])
        print(f"SFT: {time.monotonic() - started:.0f} s, model {formatted.name}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.runs.split(","):
        started = time.monotonic()
        job = launching.run_here("grpo", tiny_model_preset("grpo") | RUNS[name] | {
            "model_version": formatted.pk, "dataset": train.pk, "recipe": RewardRecipe.latest("r1-zero-math").pk,
            "stage": "reasoning_rl", "max_steps": args.steps, "top_p": 1.0, "save_steps": 0, "seed": 0,
            "output_name": f"{config.name}-{name}"}, label=f"GRPO {name}")
        data = dashboard_data(job)
        record = {"run": name, "optimiser": RUNS[name], "steps": args.steps, "x": data["x"]["values"],
                  "series": {s["key"]: s["values"] for s in data["series"]},
                  "trainer": [{"step": m.step, "metrics": m.metrics} for m in job.step_metrics.order_by("step")]}
        (out / f"grpo_{name}.json").write_text(json.dumps(record, indent=1))
        accuracy = record["series"].get("accuracy", [])
        print(f"GRPO {name}: {time.monotonic() - started:.0f} s; accuracy {accuracy[:3]} … {accuracy[-3:]}",
              flush=True)


if __name__ == "__main__":
    main()
