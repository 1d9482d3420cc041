"""Decontamination at scale: n-gram overlap of synthetic training examples against 3 benchmark sets.

The index method (workers.hygiene.overlap.OverlapIndex: sorted 64-bit n-gram hashes, windows hashed
with numpy a batch at a time) runs over every example; the naive scan (each example's n-gram set
against each benchmark prompt's) runs over a subset and is extrapolated linearly to the full size,
and the table says so. Each method runs in a fresh process, so its peak resident memory
(getrusage's ru_maxrss) is its own; the baseline of an idle interpreter with numpy is printed too.
On the subset both methods must find the same (example, prompt, shared n-grams) triples.

Examples are generated in the measured process a batch at a time (seeded, so every process sees
the same texts) and their generation time is left out of the wall time: the job reads them from
the database a chunk at a time in the same way. Some examples carry a planted excerpt of a
benchmark prompt, re-cased and re-punctuated; the index must find every one.

    python benchmarks/decontam.py [--examples 1000000] [--naive 10000] [--n 10]
"""

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.hygiene.overlap import OverlapIndex, naive_overlaps  # noqa: E402

VOCABULARY = 40_000
BENCHMARKS = 3
PROMPTS_PER_BENCHMARK = 3000
PLANT_EVERY = 997  # one example in about a thousand carries a benchmark excerpt
BATCH = 2000


def _vocabulary(seed: int = 7) -> np.ndarray:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {"".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(VOCABULARY * 2)}
    return np.array(sorted(words)[:VOCABULARY], dtype=object)


def _zipf_weights(size: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, size + 1) ** 1.05  # word frequencies as in natural text
    return weights / weights.sum()


def benchmark_prompts(seed: int = 11) -> list[str]:
    vocabulary, weights = _vocabulary(), _zipf_weights(VOCABULARY)
    rng = np.random.default_rng(seed)
    prompts = []
    for _ in range(BENCHMARKS * PROMPTS_PER_BENCHMARK):
        length = int(rng.integers(25, 120))
        prompts.append(" ".join(vocabulary[rng.choice(VOCABULARY, size=length, p=weights)]) + "?")
    return prompts


def example_batches(count: int, prompts: list[str], seed: int = 13):
    """Batches of synthetic examples (100-300 words each), with the indices of those carrying a planted
    excerpt of a benchmark prompt (20-40 words, upper-cased, commas added)."""
    vocabulary, weights = _vocabulary(), _zipf_weights(VOCABULARY)
    for start in range(0, count, BATCH):
        rng = np.random.default_rng([seed, start])
        size = min(BATCH, count - start)
        lengths = rng.integers(100, 301, size=size)
        ids = rng.choice(VOCABULARY, size=int(lengths.sum()), p=weights)
        words = vocabulary[ids]
        texts, at = [], 0
        planted = []
        for i, length in enumerate(lengths.tolist()):
            text = " ".join(words[at:at + length])
            at += length
            if (start + i) % PLANT_EVERY == 0:
                source = prompts[int(rng.integers(len(prompts)))].split()
                take = min(len(source), int(rng.integers(20, 41)))
                excerpt = ", ".join(" ".join(source[j:j + 5]) for j in range(0, take, 5)).upper()
                cut = text.find(" ", len(text) // 2)
                text = f"{text[:cut]} {excerpt} {text[cut:]}"
                planted.append(start + i)
            texts.append(text)
        yield texts, planted


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def measure(method: str, examples: int, n: int) -> dict:
    """One method over `examples` examples, in this process (run by `run` in a child process)."""
    prompts = benchmark_prompts()
    baseline = _peak_mb()
    elapsed = 0.0
    found = []
    planted_all: list[int] = []
    index_seconds = 0.0
    if method == "index":
        started = time.perf_counter()
        index = OverlapIndex(prompts, n)
        index_seconds = time.perf_counter() - started
        offset = 0
        for texts, planted in example_batches(examples, prompts):
            planted_all += planted
            started = time.perf_counter()
            found += [(offset + o.text, o.prompt, o.shared) for o in index.scan(texts, batch=BATCH)]
            elapsed += time.perf_counter() - started
            offset += len(texts)
        elapsed += index_seconds
    else:
        texts = []
        for batch, planted in example_batches(examples, prompts):
            texts += batch
            planted_all += planted
        started = time.perf_counter()
        found = naive_overlaps(texts, prompts, n)
        elapsed = time.perf_counter() - started
    matched = {t for t, _, _ in found}
    return {"method": method, "examples": examples, "n": n, "seconds": elapsed, "index_seconds": index_seconds,
            "peak_mb": _peak_mb(), "baseline_mb": baseline, "matches": len(found),
            "planted": len(planted_all), "planted_found": len(set(planted_all) & matched),
            "found": sorted(found) if examples <= 20_000 else None}


def _in_child(method: str, examples: int, n: int) -> dict:
    command = [sys.executable, __file__, "--child", method, "--examples", str(examples), "--n", str(n)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def run(examples: int = 1_000_000, naive: int = 10_000, n: int = 10) -> list[dict]:
    """Rows of the table: the index on `examples` and on the `naive` subset, the naive scan on the subset
    and extrapolated (linearly, labelled) to `examples`."""
    index_subset = _in_child("index", naive, n)
    naive_subset = _in_child("naive", naive, n)
    if index_subset["found"] != naive_subset["found"]:
        raise AssertionError("the index and the naive scan disagree on the subset")
    index_full = _in_child("index", examples, n) if examples != naive else index_subset
    scale = examples / naive
    extrapolated = {**naive_subset, "examples": examples, "seconds": naive_subset["seconds"] * scale,
                    "matches": None, "planted": None, "planted_found": None, "extrapolated": True}
    rows = [index_subset, naive_subset, index_full, extrapolated]
    for row in rows:
        row.pop("found", None)
        row.setdefault("extrapolated", False)
        row["per_second"] = row["examples"] / row["seconds"] if row["seconds"] else None
    ratio = extrapolated["seconds"] / index_full["seconds"]
    for row in rows:
        row["naive_over_index"] = None
    index_subset["naive_over_index"] = naive_subset["seconds"] / index_subset["seconds"]
    index_full["naive_over_index"] = ratio
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| method | examples | wall s | examples/s | peak RSS MB (idle interpreter) | matches | planted found "
             "| naive / index |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        label = row["method"]
        if row["extrapolated"]:
            label += ", EXTRAPOLATED (linear, from the subset's time)"
        peak = "—" if row["extrapolated"] else f"{row['peak_mb']:.0f} ({row['baseline_mb']:.0f})"
        found = "—" if row["planted"] is None else f"{row['planted_found']}/{row['planted']}"
        matches = "—" if row["matches"] is None else f"{row['matches']:,}"
        ratio = "" if row["naive_over_index"] is None else f"{row['naive_over_index']:.0f}×"
        lines.append(f"| {label} | {row['examples']:,} | {row['seconds']:.1f} | {row['per_second']:,.0f} | {peak} "
                     f"| {matches} | {found} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1_000_000)
    parser.add_argument("--naive", type=int, default=10_000, help="examples the naive scan runs on")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--child", choices=["index", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.examples, args.n)))
        return
    rows = run(args.examples, args.naive, args.n)
    print(f"{BENCHMARKS} benchmark sets × {PROMPTS_PER_BENCHMARK:,} prompts (25-120 words), examples of 100-300 "
          f"words, {args.n}-grams; index build {rows[2]['index_seconds']:.1f} s (in the index's wall time)")
    print(table(rows))


if __name__ == "__main__":
    main()
