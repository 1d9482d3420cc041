"""Rewards benchmark: the default math recipe across cores vs a single-process math-verify loop.

    python benchmarks/rewards.py [--rollouts 10000] [--processes 2]

1. 10k synthetic math rollouts (1-4k-token chains of thought with LaTeX, a final
   answer in <answer>\\boxed{...}</answer> in varied forms; about half correct) are
   scored three ways in the same run:
   - baseline: one process calling math-verify per rollout (parse the completion,
     parse the reference, verify), the obvious loop;
   - recipe, in-process: `Recipe.score` of r1-zero-math, one rollout at a time, for
     per-rollout latency (p50/p99);
   - recipe, ScoringPool: the same recipe in N worker processes (what jobs use).
2. Agreement of math_accuracy with the correctness labels of GSM8K's real model
   solutions (../shared/data/gsm8k_example_model_solutions.jsonl), if present; every
   disagreement is printed.
"""

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workers.rewards.accuracy import math_accuracy  # noqa: E402
from workers.rewards.base import Sample  # noqa: E402
from workers.rewards.pool import ScoringPool  # noqa: E402
from workers.rewards.recipes import DEFAULT_RECIPES, Recipe  # noqa: E402

SOLUTIONS = ROOT.parent / "shared" / "data" / "gsm8k_example_model_solutions.jsonl"
STEPS = [
    "Let $x$ be the unknown, so $x^2 + {a}x = {b}$.",
    "Then \\frac{{{a}}}{{{b}}} + \\frac{{1}}{{2}} simplifies, since $\\sqrt{{{a}}} \\cdot \\sqrt{{{a}}} = {a}$.",
    "Wait, let me re-check: {a} \\times {b} = {c}.",
    "So the sum $\\sum_{{k=1}}^{{{a}}} k = \\frac{{{a}({a}+1)}}{{2}}$.",
    "Alternatively, compute {b} - {a} = {d} and divide by 2.",
]
ANSWERS = [  # (answer as the model writes it, reference, equal?)
    ("\\frac{{{a}}}{{{b}}}", "\\frac{{{a}}}{{{b}}}", True),
    ("{p}\\%", "{q}", True),
    ("\\sqrt{{{s}}}", "{r}\\sqrt{{{t}}}", True),
    ("[{a}, {b})", "[{a},{b})", True),
    ("\\{{{a}, {b}\\}}", "\\{{{b},{a}\\}}", True),
    ("{c}", "{c}", True),
    ("{c}", "{d}", False),
    ("\\frac{{{a}}}{{{b}}}", "\\frac{{{b}}}{{{a}}}", False),
    ("{a}\\pi", "{a}\\pi", True),
]


def synthetic_rollout(rng: random.Random) -> Sample:
    a, b = rng.randint(2, 40), rng.randint(41, 90)
    values = {"a": a, "b": b, "c": a * b, "d": b - a}
    tokens = rng.randint(1000, 4000)
    steps, size = [], 0
    while size < tokens * 4:  # about 4 characters per token
        step = rng.choice(STEPS).format(**values)
        steps.append(step)
        size += len(step) + 1
    root = rng.randint(2, 9)
    values |= {"p": 25 * root, "q": root / 4, "s": 4 * root * root * 2, "r": 2 * root, "t": 2}
    answer, reference, _ = rng.choice(ANSWERS)
    completion = f"<think>{' '.join(steps)}</think> <answer>\\boxed{{{answer.format(**values)}}}</answer>"
    return Sample(completion, reference=reference.format(**values))


def baseline(sample: Sample) -> bool:
    from math_verify import parse, verify

    return verify(parse(sample.reference), parse(sample.completion))


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def timed_loop(fn, samples):
    latencies, results = [], []
    start = time.perf_counter()
    for sample in samples:
        t = time.perf_counter()
        results.append(fn(sample))
        latencies.append(time.perf_counter() - t)
    return time.perf_counter() - start, latencies, results


def agreement() -> None:
    if not SOLUTIONS.exists():
        print(f"\n{SOLUTIONS} not found: agreement check skipped")
        return
    agree = total = 0
    disagreements = []
    for line in open(SOLUTIONS):
        row = json.loads(line)
        for model, solution in row.items():
            if not isinstance(solution, dict):
                continue
            reward = math_accuracy(Sample(solution["solution"], reference=row["ground_truth"]))
            total += 1
            if (reward.value >= 1.0) == solution["is_correct"]:
                agree += 1
            else:
                disagreements.append((model, solution["is_correct"], reward.details))
    print(f"\nGSM8K model solutions: math_accuracy agrees with the authors' is_correct on "
          f"{agree:,} of {total:,} ({100 * agree / total:.2f}%)")
    for model, label, details in disagreements:
        print(f"  disagreement: {model} labelled {label}: {details}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rollouts", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=os.cpu_count())
    args = parser.parse_args()

    rng = random.Random(0)
    samples = [synthetic_rollout(rng) for _ in range(args.rollouts)]
    chars = statistics.mean(len(s.completion) for s in samples)
    print(f"{len(samples):,} rollouts, mean {chars:,.0f} characters; {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.2f}")

    recipe = Recipe.from_spec(DEFAULT_RECIPES["r1-zero-math"])
    baseline_s, baseline_lat, baseline_ok = timed_loop(baseline, samples)
    inproc_s, inproc_lat, scored = timed_loop(recipe.score, samples)
    with ScoringPool(recipe.to_spec(), processes=args.processes) as pool:
        list(pool.map(samples[:50]))  # start-up: workers import math-verify
        start = time.perf_counter()
        pooled = list(pool.map(samples))
        pool_s = time.perf_counter() - start

    ours_ok = [s["components"]["math_accuracy"]["value"] >= 1.0 for s in pooled]
    assert ours_ok == [s["components"]["math_accuracy"]["value"] >= 1.0 for s in scored]
    rows = [
        ("math-verify loop, 1 process (baseline)", baseline_s, baseline_lat),
        ("r1-zero-math recipe, 1 process", inproc_s, inproc_lat),
        (f"r1-zero-math recipe, ScoringPool x{args.processes}", pool_s, None),
    ]
    print("\n| method | seconds | rollouts/s | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|")
    for name, seconds, lat in rows:
        p50 = f"{1000 * percentile(lat, 50):.1f}" if lat else "—"
        p99 = f"{1000 * percentile(lat, 99):.1f}" if lat else "—"
        print(f"| {name} | {seconds:.1f} | {len(samples) / seconds:,.0f} | {p50} | {p99} |")
    print(f"\nScoringPool x{args.processes} / baseline: {baseline_s / pool_s:.1f}x; "
          f"/ recipe in 1 process: {inproc_s / pool_s:.2f}x")
    same = sum(a == b for a, b in zip(baseline_ok, ours_ok))
    print(f"correct by the recipe: {sum(ours_ok):,}; by the baseline: {sum(baseline_ok):,}; "
          f"same verdict on {same:,} of {len(samples):,}")
    agreement()


if __name__ == "__main__":
    main()
