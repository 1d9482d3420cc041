"""Ingest benchmark: rollouts into Postgres through bulk_insert vs Django's bulk_create.

    python benchmarks/ingest.py [--rows N] [--create-rows M] [--batch-size B]

Writes N rollouts (about 2 KB of completion text each, plus reasoning, answer,
JSON rewards and the stored filter columns) into the real `rollouts_rollout`
table, with all its indexes and its unique key, through
(a) `apps.core.bulk.bulk_insert` and
(b) `Rollout.objects.bulk_create(..., batch_size=1000, ignore_conflicts=True)`
(ignore_conflicts gives it the same idempotence as bulk_insert).
The table is truncated and checkpointed before each method, so both start from
the same state. Only the write call is timed; building the rows (dicts for
bulk_insert, model instances for bulk_create) is timed and reported apart, and
the built rows are frozen out of the garbage collector's scans.

bulk_create runs on at most 100,000 rows by default (about half a minute on 2
cores; 1M would take several minutes); bulk_insert then also runs on that
many, so there is a pair of equal size besides the rows/s comparison.

It sets Django up itself: DJANGO_SETTINGS_MODULE=r1studio.settings and
DATABASE_URL (default postgres://postgres@127.0.0.1:5432/r1bench; the database
is created if missing and migrated).
"""

import argparse
import gc
import inspect
import os
import random
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_db import DEFAULT_URL, print_machine, setup_django  # noqa: E402

BENCH_DB = "r1bench"
N_PROMPTS = 1000
GROUP_SIZE = 16  # samples per prompt per step, as in a GRPO group
N_VARIANTS = 256  # pre-generated text variants, so building a row costs little


# --- row generation ------------------------------------------------------------------------------

WORDS = (
    "let we need to find the value of x such that equation holds first compute both sides "
    "then simplify so therefore wait check again the sum of squares is equal hence answer "
    "consider case where n is even odd prime factor divide multiply integer root derivative "
    "substitute back verify result step because since thus 所以 我们 需要 验证"
).split()
MATH = ["\\frac{a}{b}", "\\sqrt{2}", "x^2 + y^2", "\\boxed{42}", "\\sum_{k=1}^{n} k", "\t", "\n\n"]


def text_of(rng: random.Random, n_chars: int) -> str:
    parts, size = [], 0
    while size < n_chars:
        w = rng.choice(MATH) if rng.random() < 0.05 else rng.choice(WORDS)
        parts.append(w)
        size += len(w) + 1
    return " ".join(parts)[:n_chars]


def variants(seed: int = 0):
    rng = random.Random(seed)
    completions = [text_of(rng, rng.randint(1700, 2300)) for _ in range(N_VARIANTS)]
    reasonings = [text_of(rng, rng.randint(300, 700)) for _ in range(N_VARIANTS)]
    answers = [str(rng.randint(0, 999)) for _ in range(N_VARIANTS)]
    rewards = []
    for i in range(N_VARIANTS):
        correct = i % 3 != 0
        fmt = i % 7 != 0
        rewards.append({
            "accuracy": {"value": 1.0 if correct else 0.0, "weight": 1.0,
                         "details": {"extracted": answers[i], "reference": answers[i] if correct else "17"}},
            "format": {"value": 1.0 if fmt else 0.0, "weight": 0.5,
                       "details": {"has_think": fmt, "has_answer": True}},
            "language": {"value": round(rng.uniform(0.8, 1.0), 3), "weight": 0.2, "details": {}},
        })
    return completions, reasonings, answers, rewards


def build_rows(n: int, job_id: int, prompt_ids: list[int]) -> list[dict]:
    completions, reasonings, answers, rewards = variants()
    per_step = len(prompt_ids) * GROUP_SIZE
    rows = []
    for i in range(n):
        v = (i * 7919) % N_VARIANTS  # spread rows over the variants
        r = rewards[v]
        completion = completions[v]
        total = r["accuracy"]["value"] + 0.5 * r["format"]["value"] + 0.2 * r["language"]["value"]
        p = (i // GROUP_SIZE) % len(prompt_ids)
        rows.append({
            "job_id": job_id,
            "prompt_id": prompt_ids[p],
            "step": i // per_step,
            "group": p,
            "sample_index": i % GROUP_SIZE,
            "completion": completion,
            "reasoning": reasonings[v],
            "answer": answers[v],
            "prompt_tokens": 60,
            "completion_tokens": len(completion) // 4,
            "finish_reason": "length" if v % 11 == 0 else "stop",
            "total_reward": total,
            "rewards": r,
            "advantage": total - 1.2,
            "is_correct": r["accuracy"]["value"] == 1.0,
            "format_ok": r["format"]["value"] == 1.0,
            "language_consistency": r["language"]["value"],
            "length_chars": len(completion),
            "has_reflection": "wait" in completion,
        })
    return rows


# --- the benchmark -------------------------------------------------------------------------------

def reset_table() -> None:
    """Empty the rollouts table (and what references it) and flush dirty pages, so each method starts alike."""
    from django.db import connection

    with connection.cursor() as c:
        c.execute("TRUNCATE rollouts_rollout CASCADE")
        c.execute("CHECKPOINT")


def count_rows(job_id: int) -> int:
    from apps.rollouts.models import Rollout

    return Rollout.objects.filter(job_id=job_id).count()


def prepare(database_name: str):
    from apps.core.bulk import bulk_insert
    from apps.datasets.models import Dataset, Prompt
    from apps.jobs.models import Job
    from apps.rollouts.models import Rollout

    if database_name != BENCH_DB and Rollout.objects.exists():
        sys.exit(f"refusing to truncate rollouts in database {database_name!r}: it holds rollouts "
                 f"(use an empty database, or the default {BENCH_DB})")
    dataset, _ = Dataset.objects.get_or_create(name="ingest-bench")
    have = Prompt.objects.filter(dataset=dataset).count()
    if have < N_PROMPTS:
        bulk_insert(Prompt, [
            {"dataset_id": dataset.pk, "question": f"bench question {i}", "content_hash": f"bench{i}"}
            for i in range(have, N_PROMPTS)
        ])
    prompts = Prompt.objects.filter(dataset=dataset).order_by("pk")
    prompt_ids = list(prompts.values_list("pk", flat=True)[:N_PROMPTS])
    job = Job.objects.create(kind="generate", label="ingest benchmark")
    return job, prompt_ids


def run_bulk_insert(n, job_id, prompt_ids, batch_size):
    from apps.core.bulk import bulk_insert
    from apps.rollouts.models import Rollout

    reset_table()
    t = time.perf_counter()
    rows = build_rows(n, job_id, prompt_ids)
    build = time.perf_counter() - t
    batch_size = batch_size or inspect.signature(bulk_insert).parameters["batch_size"].default
    gc.freeze()
    t = time.perf_counter()
    inserted = bulk_insert(Rollout, rows, batch_size=batch_size)
    seconds = time.perf_counter() - t
    gc.unfreeze()
    del rows
    assert inserted == n and count_rows(job_id) == n, (inserted, n)
    label = f"bulk_insert (batch {batch_size:,})"
    return {"method": label, "rows": n, "build": build, "seconds": seconds}


def run_bulk_create(n, job_id, prompt_ids):
    from apps.rollouts.models import Rollout

    reset_table()
    t = time.perf_counter()
    objs = [Rollout(**row) for row in build_rows(n, job_id, prompt_ids)]
    build = time.perf_counter() - t
    gc.freeze()
    t = time.perf_counter()
    Rollout.objects.bulk_create(objs, batch_size=1000, ignore_conflicts=True)
    seconds = time.perf_counter() - t
    gc.unfreeze()
    del objs
    assert count_rows(job_id) == n
    return {"method": "bulk_create (batch 1,000)", "rows": n, "build": build, "seconds": seconds}


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="rollouts through bulk_insert (default 1,000,000)")
    parser.add_argument("--create-rows", type=int, default=None,
                        help="rollouts through bulk_create (default: --rows, at most 100,000; when fewer, "
                             "bulk_insert also runs on that many rows, for a like-for-like pair)")
    parser.add_argument("--batch-size", type=int, default=None, help="bulk_insert batch_size (default: its own)")
    args = parser.parse_args()
    create_rows = args.create_rows if args.create_rows is not None else min(args.rows, 100_000)

    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    setup_django(url)
    print_machine()

    job, prompt_ids = prepare(urlsplit(url).path.lstrip("/"))
    runs = [("bulk_insert", args.rows)]
    if create_rows != args.rows:
        runs.append(("bulk_insert", create_rows))
    runs.append(("bulk_create", create_rows))
    results = []
    for method, n in runs:
        if method == "bulk_insert":
            r = run_bulk_insert(n, job.pk, prompt_ids, args.batch_size)
        else:
            r = run_bulk_create(n, job.pk, prompt_ids)
        r["rate"] = r["rows"] / r["seconds"]
        results.append(r)
        print(f"  {r['method']}, {n:,} rows: {r['seconds']:.1f} s (load average {loadavg()})", flush=True)
    reset_table()  # leave the bench database small

    print()
    build = "building rows, s (untimed)"
    print(f"| {'method':<28} | {'rows':>9} | {'seconds':>7} | {'rows/s':>7} | {build} |")
    print(f"|{'-' * 30}|{'-' * 10}:|{'-' * 8}:|{'-' * 8}:|{'-' * (len(build) + 1)}:|")
    for r in results:
        print(f"| {r['method']:<28} | {r['rows']:>9,} | {r['seconds']:>7.1f} | {r['rate']:>7,.0f} "
              f"| {r['build']:>{len(build)}.1f} |")
    create = results[-1]
    print()
    if create["rows"] != args.rows:
        print(f"bulk_create ran on {create['rows']:,} rows, not {args.rows:,} (see --create-rows): "
              "compare rows/s, or the pair of equal size.")
    for r in results[:-1]:
        how = "same rows" if r["rows"] == create["rows"] else "by rows/s"
        print(f"bulk_insert {r['rows']:,} / bulk_create {create['rows']:,}: {r['rate'] / create['rate']:.1f}x ({how})")


if __name__ == "__main__":
    main()
