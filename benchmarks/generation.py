"""Generation benchmark: the transformers backend on the tiny model, and where a job's time goes.

    python benchmarks/generation.py [--prompts 256] [--n 4]

1. Tokens/s of TransformersBackend at batch 1 and batch 32 (the same 32 prompts,
   64 new tokens each, sampling at temperature 1; the ratio is the batching gain).
2. A real generation job (in-process, on the scratch Postgres database `r1bench`):
   `--prompts` synthetic arithmetic prompts x `--n` samples, scored with r1-zero-math,
   and the share of its wall time spent writing rollouts to the database (goal < 5%).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench_db import DEFAULT_URL, setup_django  # noqa: E402


def tokens_per_second(backend, prompts, batch_size: int) -> tuple[float, int]:
    from workers.generation.base import SamplingParams

    backend.batch_size = batch_size
    params = SamplingParams(n=1, temperature=1.0, top_p=1.0, max_tokens=64, seed=0)
    start = time.perf_counter()
    completions = backend.generate(prompts, params)
    seconds = time.perf_counter() - start
    tokens = sum(c.completion_tokens for group in completions for c in group)
    return tokens / seconds, tokens


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--n", type=int, default=4)
    args = parser.parse_args()
    setup_django(os.environ.get("DATABASE_URL") or DEFAULT_URL)

    import torch

    from apps.core.bulk import bulk_insert
    from apps.datasets.models import Dataset, ModelVersion, Prompt
    from apps.jobs import launching
    from apps.jobs.runner import execute
    from apps.rollouts.models import RewardRecipe
    from workers.generation.templates import R1_ZERO, render
    from workers.generation.tiny import build_tiny_model
    from workers.generation.transformers_backend import TransformersBackend
    from workers.synthetic import arithmetic_dataset

    torch.set_num_threads(1)
    problems = arithmetic_dataset(max(args.prompts, 32), seed=7)
    with tempfile.TemporaryDirectory() as folder:
        path = build_tiny_model(Path(folder) / "tiny", seed=0)
        backend = TransformersBackend(str(path), device="cpu")
        prompts = [render(R1_ZERO, p["question"]) for p in problems[:32]]
        tokens_per_second(backend, prompts[:4], 4)  # warm-up
        single, single_tokens = tokens_per_second(backend, prompts, 1)
        batched, batched_tokens = tokens_per_second(backend, prompts, 32)
        params = sum(p.numel() for p in backend.model.parameters())
        print(f"tiny model: {params:,} parameters; torch threads {torch.get_num_threads()}; "
              f"load average {os.getloadavg()[0]:.2f}\n")
        print("| transformers backend, 32 prompts x 64 new tokens | tokens | tokens/s |\n|---|---:|---:|")
        print(f"| batch 1 | {single_tokens:,} | {single:,.0f} |\n| batch 32 | {batched_tokens:,} | {batched:,.0f} |")
        print(f"\nbatch 32 / batch 1: {batched / single:.1f}x")

        dataset, _ = Dataset.objects.get_or_create(name="bench-generation")
        dataset.prompts.all().delete()
        bulk_insert(Prompt, [{"dataset_id": dataset.pk, "question": p["question"], "reference_answer": p["answer"],
                              "content_hash": str(i)} for i, p in enumerate(problems[:args.prompts])])
        model, _ = ModelVersion.objects.update_or_create(name="bench-tiny", defaults={"uri": str(path)})
        job = launching.launch("generate", {
            "dataset": dataset.pk, "model_version": model.pk, "n": args.n, "batch_size": 32, "max_tokens": 64,
            "recipe": RewardRecipe.latest("r1-zero-math").pk, "temperature": 1.0, "top_p": 1.0,
        }, enqueue=False)
        start = time.perf_counter()
        status = execute(job.pk, worker="benchmark")
        wall = time.perf_counter() - start
        job.refresh_from_db()
        result = job.result
        print(f"\ngeneration job ({status}): {args.prompts} prompts x {args.n} samples, "
              f"{result['rollouts_written']:,} rollouts, {result['tokens_generated']:,} tokens in {wall:.1f} s")
        print(f"tokens/s while generating: {result['tokens_per_s']:,.0f}; "
              f"database writes: {100 * result['db_write_share']:.2f}% of the job's wall time")


if __name__ == "__main__":
    main()
