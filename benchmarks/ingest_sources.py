"""Ingest benchmark by source format: a TRL-style Parquet folder and a verl folder against R1 Studio's JSONL.

    python benchmarks/ingest_sources.py [--rows N] [--files F] [--chars C]

Writes the same N samples (default 1,000,000; C characters of completion each, default 800) three
ways, each split over F files (default 10; one per step):
- jsonl: R1 Studio's own format (prompt, reference_answer, completion, rewards, step), the baseline;
- trl: `completions_<step>.parquet` as TRL 1.16's GRPOTrainer.log writes them (step, prompt,
  completion, one float column per reward function, a log_extra column, advantage), with the reward
  columns named as a user would (`reward_columns`);
- verl: `<step>.jsonl` as verl's _dump_generations writes them (input as a decoded ChatML prompt with
  verl's GSM8K instruction, output, gts, score, step, plus acc and pred).
Then times `ingest_file` (the ingest_rollouts job's body: validate every record, then write in one
transaction) on each, into a scratch database (`r1bench`, created and migrated), with the rollout
and prompt tables emptied and checkpointed before each format. Writing the files is not timed.
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_db import DEFAULT_URL, print_machine, setup_django  # noqa: E402
from ingest import loadavg, text_of  # noqa: E402

N_PROMPTS = 2000
GSM8K_INSTRUCTION = 'Let\'s think step by step and output the final answer after "####".'


def samples(n: int, files: int, chars: int):
    """(step, question, reference, completion, correct) for n samples over `files` steps."""
    rng = random.Random(0)
    bodies = [text_of(rng, chars) for _ in range(256)]
    per_step = -(-n // files)
    for i in range(n):
        q = (i // 16) % N_PROMPTS
        correct = i % 3 != 0
        answer = str(q) if correct else str(q + 1)
        completion = f"<think>{bodies[i % 256]}</think> <answer>{answer}</answer>"
        yield 1 + i // per_step, f"Question {q}: what is {q} + 0?", str(q), completion, correct


def write_sources(folder: Path, n: int, files: int, chars: int) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = {fmt: folder / fmt for fmt in ("jsonl", "trl", "verl")}
    for path in paths.values():
        path.mkdir()
    by_step: dict[int, list] = {}
    for sample in samples(n, files, chars):
        by_step.setdefault(sample[0], []).append(sample)
    with open(paths["jsonl"] / "rollouts.jsonl", "w") as ours:
        for step, rows in by_step.items():
            with open(paths["verl"] / f"{step}.jsonl", "w") as verl:
                for _, question, reference, completion, correct in rows:
                    ours.write(json.dumps({"prompt": question, "reference_answer": reference,
                                           "completion": completion, "step": step,
                                           "rewards": {"accuracy": float(correct), "format": 1.0}}) + "\n")
                    verl.write(json.dumps({
                        "input": f"system\nYou are a helpful assistant.\nuser\n{question} {GSM8K_INSTRUCTION}\n"
                                 "assistant\n",
                        "output": completion, "gts": reference, "score": float(correct), "step": step,
                        "acc": correct, "pred": reference if correct else "?"}) + "\n")
            table = pa.table({
                "step": [step] * len(rows),
                "prompt": [[{"role": "user", "content": r[1]}] for r in rows],
                "completion": [[{"role": "assistant", "content": r[3]}] for r in rows],
                "accuracy_reward": [float(r[4]) for r in rows],
                "format_reward": [1.0] * len(rows),
                "n_chars": [len(r[3]) for r in rows],
                "advantage": [0.5 if r[4] else -0.5 for r in rows],
            })
            pq.write_table(table, paths["trl"] / f"completions_{step:05d}.parquet")
    paths["jsonl"] = paths["jsonl"] / "rollouts.jsonl"
    return paths


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else list(path.iterdir())
    return sum(f.stat().st_size for f in files) / 1e6


def reset() -> None:
    from django.db import connection

    with connection.cursor() as c:
        c.execute("TRUNCATE rollouts_rollout, datasets_prompt CASCADE")
        c.execute("CHECKPOINT")


def run(fmt: str, path: Path) -> dict:
    from apps.datasets.models import Dataset
    from apps.jobs.models import Job
    from apps.jobs.runner import JobContext
    from apps.rollouts.ingest import ingest_file

    reset()
    dataset, _ = Dataset.objects.get_or_create(name="ingest-sources-bench")
    options = {"reward_columns": "accuracy_reward, format_reward"} if fmt == "trl" else {}
    job = Job.objects.create(kind="ingest_rollouts", status=Job.Status.RUNNING,
                             params={"dataset": dataset.pk, "path": str(path), "format": fmt, **options})
    start = time.perf_counter()
    result = ingest_file(path, fmt, dataset=dataset, ctx=JobContext(job), force=True, **options)
    seconds = time.perf_counter() - start
    return {"format": fmt, "rows": result.landed, "prompts": result.prompts_created, "seconds": seconds,
            "mb": size_mb(path)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--chars", type=int, default=800, help="completion characters per sample")
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    setup_django(url)
    print_machine()
    folder = Path(tempfile.mkdtemp(prefix="ingest-sources-"))
    try:
        start = time.perf_counter()
        paths = write_sources(folder, args.rows, args.files, args.chars)
        print(f"wrote the three sources in {time.perf_counter() - start:.0f} s (untimed)", flush=True)
        results = []
        for fmt in ("jsonl", "trl", "verl"):
            print(f"  {fmt}: ingesting (load average {loadavg()})", flush=True)
            results.append(run(fmt, paths[fmt]))
            assert results[-1]["rows"] == args.rows, results[-1]
        reset()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    base = results[0]["rows"] / results[0]["seconds"]
    print()
    print("| format | files | MB on disk | rows | prompts | seconds | rows/s | rows/s vs jsonl |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        files = 1 if r["format"] == "jsonl" else args.files
        rate = r["rows"] / r["seconds"]
        print(f"| {r['format']} | {files} | {r['mb']:,.0f} | {r['rows']:,} | {r['prompts']:,} | {r['seconds']:.0f} "
              f"| {rate:,.0f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
