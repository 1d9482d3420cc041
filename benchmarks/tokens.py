"""Token lens benchmark: what per-token traces cost to store, to write and to draw, and what capturing them
costs GRPO.

    python benchmarks/tokens.py [--rollouts 200] [--tokens 1024] [--repeat 15] [--grpo-steps 20]
                                [--parts storage,page,grpo]

On the scratch Postgres database `r1bench` (created and migrated on first use):

1. Bytes per token: `--rollouts` rollouts of `--tokens` tokens, their traces as a model's would be (ids of
   a 150k vocabulary drawn Zipf-like, as words repeat in text; log-probs mostly near 0, entropies spread),
   written with write_rollouts; the size Postgres keeps (pg_column_size of every column and the row, after
   TOAST compression, plus the table's three summary indexes), with and without the top-5 alternatives.
   The baseline is the same rollouts written without traces (`bulk_insert` time alone).
2. The rollout page's server time (the whole view through the test client, median of --repeat requests)
   for a 4,096-token completion with and without token data, and for 10,000 tokens with it.
3. GRPO step time on the tiny model (SFT'd for the format), TRL's own per-step `step_time`, median over
   all steps but the first, with and without capture, runs alternating (the trainer started directly as
   the job would under accelerate launch, no database), for steps_per_generation 1 (the loss gives the
   tokens) and 2 (TRL's old log-probs do). On a shared machine the runs vary more than capture costs, so
   the capture code's own time per step is measured apart too: turning one step's log-probs and
   entropies (64 completions of 64 tokens, the tiny tokenizer) into the event's traces.
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench_db import DEFAULT_URL, setup_django  # noqa: E402

VOCAB = 150_000


def realistic_trace(n: int, rng, top_k: int = 5):
    from workers.tokens import TokenTrace

    ids = (rng.zipf(1.3, n) - 1) % VOCAB  # tokens repeat in text as words do (Zipf)
    confident = rng.random(n) < 0.85  # most tokens are near-certain, a few are forks
    logprobs = np.where(confident, -rng.exponential(0.02, n), -rng.exponential(1.5, n))
    entropy = np.where(confident, rng.exponential(0.05, n), rng.exponential(1.2, n))
    top_ids = top_logprobs = None
    if top_k:
        top_ids = np.concatenate([ids[:, None], (rng.zipf(1.3, (n, top_k - 1)) - 1) % VOCAB], axis=1)
        below = logprobs[:, None] - rng.exponential(2.0, (n, top_k - 1))
        top_logprobs = np.sort(np.concatenate([logprobs[:, None], below], axis=1), axis=1)[:, ::-1]
    named = np.unique(np.concatenate([ids, top_ids.reshape(-1)]) if top_k else ids)
    pieces = {int(i): f" w{i % 5000}".encode()[: 1 + int(i) % 6] for i in named}  # 1-6 bytes, as BPE tokens are
    return TokenTrace(ids=ids, logprobs=logprobs, entropy=entropy, top_ids=top_ids, top_logprobs=top_logprobs,
                      pieces=pieces, entropy_kind="sampling")


def storage(args, rng) -> list[tuple]:
    from django.db import connection

    from apps.core.bulk import bulk_insert
    from apps.datasets.models import Dataset, Prompt
    from apps.jobs.models import Job
    from apps.rollouts.models import Rollout, RolloutTokens
    from apps.rollouts.rows import rollout_row
    from apps.rollouts.tokens import write_rollouts

    dataset = Dataset.objects.create(name=f"bench-tokens-{time.time_ns()}")
    prompt = Prompt.objects.create(dataset=dataset, question="q", reference_answer="1", content_hash="h")
    text = "word " * args.tokens
    rows_out = []
    for top_k in (5, 0):
        timings = {}
        for traced in (False, True):
            job = Job.objects.create(kind="generate")
            traces = [realistic_trace(args.tokens, rng, top_k) for _ in range(args.rollouts)] if traced else None
            rows = [rollout_row(job_id=job.pk, prompt_id=prompt.pk, completion=text, sample_index=i,
                                completion_tokens=args.tokens) | ({"tokens": traces[i]} if traced else {})
                    for i in range(args.rollouts)]
            t0 = time.perf_counter()
            if traced:
                write_rollouts(rows)
            else:
                bulk_insert(Rollout, rows)
            timings[traced] = time.perf_counter() - t0
            if traced:
                with connection.cursor() as c:
                    c.execute("""SELECT sum(pg_column_size(t.*)), sum(pg_column_size(token_ids)),
                                        sum(pg_column_size(logprobs)), sum(pg_column_size(entropy)),
                                        sum(coalesce(pg_column_size(top_ids), 0)),
                                        sum(coalesce(pg_column_size(top_logprobs), 0)), sum(pg_column_size(pieces))
                                 FROM rollouts_rollouttokens t WHERE job_id = %s""", [job.pk])
                    row, ids, lps, ent, tids, tlps, pieces = c.fetchone()
                    c.execute("SELECT sum(pg_relation_size(indexrelid)) FROM pg_index "
                              "WHERE indrelid = 'rollouts_rollouttokens'::regclass AND NOT indisprimary")
                    index_bytes = c.fetchone()[0]
                    c.execute("SELECT count(*) FROM rollouts_rollouttokens")
                    all_rows = c.fetchone()[0]
            RolloutTokens.objects.filter(job=job).delete()
            Rollout.objects.filter(job=job).delete()
            with connection.cursor() as c:  # outside a transaction (autocommit): the next run starts unbloated
                c.execute("VACUUM rollouts_rollouttokens")
        tokens = args.rollouts * args.tokens
        per_row_index = index_bytes / max(all_rows, 1)
        rows_out.append((f"top-{top_k}" if top_k else "no top-k", row / tokens, ids / tokens, lps / tokens,
                         ent / tokens, (tids + tlps) / tokens, pieces / tokens, per_row_index * args.rollouts / tokens,
                         timings[False], timings[True]))
    return rows_out


def page_times(args, rng) -> list[tuple]:
    from django.contrib.auth.models import User
    from django.test import Client
    from django.test.utils import setup_test_environment

    from apps.datasets.models import Dataset, Prompt
    from apps.jobs.models import Job
    from apps.rollouts.rows import rollout_row
    from apps.rollouts.tokens import write_rollouts

    setup_test_environment()
    user, _ = User.objects.get_or_create(username="bench", defaults={"is_superuser": True, "is_staff": True})
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    dataset = Dataset.objects.create(name=f"bench-page-{time.time_ns()}")
    prompt = Prompt.objects.create(dataset=dataset, question="What is 3 + 4?", reference_answer="7", content_hash="h")
    job = Job.objects.create(kind="generate")
    results = []
    for index, (n, traced) in enumerate(((4096, False), (4096, True), (10_000, True))):
        trace = realistic_trace(n, rng)
        text = b"".join(trace.pieces[i] for i in trace.ids.tolist()).decode("utf-8", "replace")
        write_rollouts([rollout_row(job_id=job.pk, prompt_id=prompt.pk, completion=text, sample_index=index,
                                    completion_tokens=n) | {"tokens": trace if traced else None}])
        pk = job.rollouts.get(sample_index=index).pk
        times, size = [], 0
        for _ in range(args.repeat + 1):
            t0 = time.perf_counter()
            response = client.get(f"/rollouts/{pk}/")
            times.append(time.perf_counter() - t0)
            assert response.status_code == 200, response.status_code
            size = len(response.content)
        times = sorted(times[1:])  # the first request warms caches
        results.append((f"{n:,} tokens, {'with' if traced else 'without'} token data", statistics.median(times),
                        times[int(0.95 * (len(times) - 1))], size))
    return results


def grpo(args) -> list[tuple]:
    from workers.generation.templates import R1_ZERO, render
    from workers.generation.tiny import build_tiny_model
    from workers.rewards.recipes import DEFAULT_RECIPES
    from workers.synthetic import arithmetic_dataset
    from workers.training.spec import GRPOSpec, TrainSpec

    scratch = Path(tempfile.mkdtemp(prefix="r1bench-tokens-"))
    with contextlib.redirect_stdout(sys.stderr):  # the SFT's own logs are not the table
        model = build_tiny_model(scratch / "tiny", sft_steps=300)
    data = scratch / "data.jsonl"
    with open(data, "w") as f:
        for i, p in enumerate(arithmetic_dataset(2000, seed=1)):
            f.write(json.dumps({"prompt": render(R1_ZERO, p["question"]), "prompt_id": i + 1, "question": p["question"],
                                "reference": p["answer"], "tests": "[]", "domain": "math", "language": "en"}) + "\n")
    results = []
    import torch
    from transformers import AutoTokenizer

    from workers.tokens import TokenBytes
    from workers.training.train import add_token_traces

    token_bytes = TokenBytes(AutoTokenizer.from_pretrained(model))
    rows = [{"completion_tokens": 60} for _ in range(64)]
    ids = {"completion_ids": torch.randint(0, 470, (64, 64))}
    logps, entropies = -torch.rand(64, 64), torch.rand(64, 64)
    times = []
    for _ in range(51):
        t0 = time.perf_counter()
        add_token_traces(rows, ids, logps, entropies, range(64), token_bytes)
        json.dumps(rows)
        times.append(time.perf_counter() - t0)
    results.append(("capture code alone", None, statistics.median(times[1:]), None))
    for steps_per_generation in (1, 2):
        medians = {True: [], False: []}
        for repeat in range(args.grpo_repeats):
            for capture in (True, False):
                run = scratch / f"run-{steps_per_generation}-{repeat}-{capture}"
                run.mkdir()
                grpo_spec = GRPOSpec(recipe=DEFAULT_RECIPES["r1-zero-math"], num_generations=8,
                                     steps_per_generation=steps_per_generation, max_completion_length=64,
                                     temperature=1.0, beta=0.0, epsilon=0.2, loss_type="dapo", capture_tokens=capture)
                spec = TrainSpec(kind="grpo", model_path=str(model), data_path=str(data), run_dir=str(run),
                                 checkpoint_dir=str(run / "checkpoints"), final_dir=str(run / "final"),
                                 max_steps=args.grpo_steps, learning_rate=1e-4, per_device_batch_size=64,
                                 save_steps=0, seed=repeat, grpo=grpo_spec)
                (run / "spec.json").write_text(spec.to_json())
                done = subprocess.run([sys.executable, "-m", "workers.training.train", str(run / "spec.json")],
                                      cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                                      text=True)  # its output (and the tiny model's SFT logs) stay out of the table
                if done.returncode:
                    raise SystemExit(done.stderr[-3000:])
                events = [json.loads(line) for line in (run / "events.0.jsonl").read_text().splitlines()]
                steps = [e["metrics"]["step_time"] for e in events
                         if e["type"] == "metrics" and e["step"] > 1 and "step_time" in e["metrics"]]
                traced = sum(1 for e in events if e["type"] == "rollouts" for r in e["rows"] if "tokens" in r)
                medians[capture].append(statistics.median(steps))
                print(f"  steps_per_generation={steps_per_generation} run {repeat + 1} "
                      f"{'with' if capture else 'without'} capture: median step {statistics.median(steps):.3f} s, "
                      f"{traced} traced rollouts", flush=True)
        with_, without = statistics.median(medians[True]), statistics.median(medians[False])
        results.append((f"steps_per_generation={steps_per_generation}", without, with_, with_ / without))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--grpo-steps", type=int, default=20)
    parser.add_argument("--grpo-repeats", type=int, default=2)
    parser.add_argument("--parts", default="storage,page,grpo", help="which of storage, page, grpo to run")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    setup_django(os.environ.get("DATABASE_URL") or DEFAULT_URL)
    rng = np.random.default_rng(0)

    if "storage" in parts:
        print(f"Storage: {args.rollouts} rollouts x {args.tokens} tokens, bytes per token as Postgres stores them")
        print(f"{'':<10}{'row':>8}{'ids':>8}{'logprob':>9}{'entropy':>9}{'top-k':>8}{'pieces':>8}{'indexes':>9}"
              f"{'write w/o (s)':>15}{'write with (s)':>16}")
        for name, row, ids, lps, ent, top, pieces, index, without, with_ in storage(args, rng):
            print(f"{name:<10}{row:>8.2f}{ids:>8.2f}{lps:>9.2f}{ent:>9.2f}{top:>8.2f}{pieces:>8.2f}{index:>9.3f}"
                  f"{without:>15.3f}{with_:>16.3f}")

    if "page" in parts:
        print(f"\nRollout page, server time (whole view, {args.repeat} requests)")
        print(f"{'':<36}{'median (ms)':>12}{'p95 (ms)':>10}{'HTML (KB)':>11}")
        for name, median, p95, size in page_times(args, rng):
            print(f"{name:<36}{median * 1000:>12.1f}{p95 * 1000:>10.1f}{size / 1024:>11.0f}")

    if "grpo" in parts:
        print(f"\nGRPO on the tiny model: {args.grpo_steps} steps x 64 completions (G=8, 64 tokens), "
              f"{args.grpo_repeats} runs each, TRL's step_time, median")
        rows = grpo(args)
        print(f"{'':<26}{'without (s)':>12}{'with (s)':>10}{'ratio':>8}")
        for name, without, with_, ratio in rows:
            if without is None:
                print(f"{name:<26}{'':>12}{with_:>10.4f}{'':>8}  (per step of 64 completions)")
            else:
                print(f"{name:<26}{without:>12.3f}{with_:>10.3f}{ratio:>8.3f}")


if __name__ == "__main__":
    main()
