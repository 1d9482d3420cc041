"""GRPO benchmark: TRL's step time on the tiny model with and without R1 Studio's rollout recording.

    python benchmarks/grpo.py [--steps 40] [--repeats 3]

Runs real GRPO jobs in-process on the scratch Postgres database `r1bench`: TRL
under `accelerate launch`, supervised by the job, which writes the metrics and
(with recording) every completion as a rollout. "Without" is the same job with
the trainer's rollout events switched off (the spec's `record_rollouts`), so the
difference is what storing every completion costs: the trainer's event writes
plus the supervisor's inserts competing for the same two cores. Runs alternate
with and without, `--repeats` times; the figure is TRL's own per-step
`step_time`, median over all steps but the first. Goal: at most 5% overhead.
"""

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench_db import DEFAULT_URL, setup_django  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="completions per step")
    parser.add_argument("--group", type=int, default=8)
    args = parser.parse_args()
    setup_django(os.environ.get("DATABASE_URL") or DEFAULT_URL)

    from apps.core.bulk import bulk_insert
    from apps.datasets.models import Dataset, ModelVersion, Prompt
    from apps.jobs import launching
    from apps.jobs.runner import execute
    from apps.rollouts.models import Rollout
    from apps.training import training
    from apps.training.models import StepMetric
    from workers.generation.tiny import build_tiny_model
    from workers.synthetic import arithmetic_dataset

    scratch = Path(tempfile.mkdtemp(prefix="r1bench-grpo-"))
    started = time.monotonic()
    model_dir = build_tiny_model(scratch / "tiny", sft_steps=300)
    print(f"tiny model with 300 SFT steps built in {time.monotonic() - started:.0f} s")
    model = ModelVersion.objects.create(name=f"bench-grpo-{time.time_ns()}", uri=str(model_dir))
    dataset = Dataset.objects.create(name=f"bench-grpo-{time.time_ns()}")
    bulk_insert(Prompt, [{"dataset_id": dataset.pk, "question": p["question"], "reference_answer": p["answer"],
                          "content_hash": f"g{i}"} for i, p in enumerate(arithmetic_dataset(2000, seed=1))])

    build_spec = training._spec
    results = {True: [], False: []}
    for repeat in range(args.repeats):
        for record in (True, False):
            def with_recording(*a, record=record, **k):
                spec = build_spec(*a, **k)
                return dataclasses.replace(spec, grpo=dataclasses.replace(spec.grpo, record_rollouts=record))

            training._spec = with_recording
            job = launching.launch("grpo", {
                "model_version": model.pk, "dataset": dataset.pk, "max_steps": args.steps, "batch_size": args.batch,
                "num_generations": args.group, "steps_per_generation": 1, "max_completion_length": 64,
                "learning_rate": 1e-4, "beta": 0.0, "epsilon": 0.2, "save_steps": 0, "seed": repeat,
                "stage": "reasoning_rl"}, enqueue=False)
            t0 = time.monotonic()
            status = execute(job.pk, "bench")
            wall = time.monotonic() - t0
            if status != "succeeded":
                job.refresh_from_db()
                raise SystemExit(f"job {job.pk} {status}: {job.error}")
            steps = StepMetric.objects.filter(job=job, step__gt=1).values_list("metrics", flat=True)
            step_time = statistics.median(m["step_time"] for m in steps)
            stored = Rollout.objects.filter(job=job).count()
            results[record].append((step_time, wall, stored))
            print(f"run {repeat + 1} {'with' if record else 'without'} recording: median step {step_time:.3f} s, "
                  f"job {wall:.1f} s, {stored} rollouts stored")
    training._spec = build_spec

    with_step = statistics.median(r[0] for r in results[True])
    without_step = statistics.median(r[0] for r in results[False])
    with_wall = statistics.median(r[1] for r in results[True])
    without_wall = statistics.median(r[1] for r in results[False])
    print()
    print(f"GRPO on the tiny model: {args.steps} steps x {args.batch} completions (G={args.group}), "
          f"{args.repeats} runs each, median")
    print(f"{'':<28}{'step time (s)':>15}{'job wall (s)':>15}{'rollouts':>10}")
    print(f"{'TRL alone (no recording)':<28}{without_step:>15.3f}{without_wall:>15.1f}{0:>10}")
    print(f"{'with R1 Studio recording':<28}{with_step:>15.3f}{with_wall:>15.1f}{results[True][0][2]:>10}")
    print(f"{'overhead (ratio)':<28}{with_step / without_step:>15.3f}{with_wall / without_wall:>15.3f}")


if __name__ == "__main__":
    main()
