"""Near-duplicate detection at scale: MinHash/LSH (workers.hygiene.near_dup) against naive pairwise Jaccard.

Synthetic examples (Zipf-distributed words, lengths log-normal around 150 words, 30-600: a question
and a worked solution) are generated in the measured process a batch at a time, seeded, and their
generation time is left out of the wall time. Every PLANT_EVERY-th example is a planted copy of an
earlier example of its batch: re-cased and re-punctuated (an exact duplicate once normalised) or
with one word in 40-120 replaced (a near duplicate). Recall is the share of planted pairs whose true
word 5-shingle Jaccard is at least the threshold that end in one cluster.

The naive baseline computes the exact Jaccard similarity of every pair's shingle sets on a subset
(10k: 50M pairs) and is extrapolated quadratically to the full size (time) and linearly (memory:
it holds every example's shingle set), labelled as such. On the subset, the pairs MinHash/LSH joins
are compared with the pairs the naive scan finds above the threshold. Each measurement runs in a
fresh process so its peak resident memory (getrusage's ru_maxrss) is its own.

    python benchmarks/dedup.py [--examples 1000000] [--naive 10000] [--threshold 0.8] [--measured N]
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.hygiene.near_dup import Signer, find_clusters, jaccard, shingles  # noqa: E402

VOCABULARY_SIZE = 30_000
PLANT_EVERY = 50  # one example in 50 is a planted copy of an earlier one
BATCH = 2000


def _vocabulary() -> np.ndarray:
    rng = np.random.default_rng(3)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = {"".join(rng.choice(letters, size=int(rng.integers(2, 11)))) for _ in range(VOCABULARY_SIZE * 2)}
    return np.array(sorted(words)[:VOCABULARY_SIZE], dtype=object)


def _zipf() -> np.ndarray:
    weights = 1.0 / np.arange(1, VOCABULARY_SIZE + 1) ** 1.05
    return weights / weights.sum()


def batches(count: int, seed: int = 5):
    """(texts, planted pairs as (source index, copy index, true Jaccard)) a batch at a time."""
    vocabulary, weights = _vocabulary(), _zipf()
    for start in range(0, count, BATCH):
        rng = np.random.default_rng([seed, start])
        size = min(BATCH, count - start)
        lengths = np.clip(rng.lognormal(np.log(150), 0.6, size=size), 30, 600).astype(int)
        words = vocabulary[rng.choice(VOCABULARY_SIZE, size=int(lengths.sum()), p=weights)]
        texts, planted, at = [], [], 0
        for i, length in enumerate(lengths.tolist()):
            index = start + i
            if i > 0 and index % PLANT_EVERY == 0:
                source = int(rng.integers(0, i))
                tokens = texts[source].split()
                if index % (2 * PLANT_EVERY) == 0:  # exact once normalised
                    text = " ".join(tokens).upper().replace(" ", "  ", 3) + "!"
                else:
                    every = int(rng.integers(40, 121))
                    for j in range(int(rng.integers(0, every)), len(tokens), every):
                        tokens[j] = "planted" + str(j)
                    text = " ".join(tokens)
                planted.append((start + source, index, jaccard(shingles(texts[source]), shingles(text))))
            else:
                text = " ".join(words[at:at + length]) + "."
            at += length
            texts.append(text)
        yield texts, planted


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pairs_joined(clusters) -> set[tuple[int, int]]:
    return {pair for cluster in clusters for pair in combinations(cluster.members, 2)}


def measure(method: str, examples: int, threshold: float) -> dict:
    idle = _peak_mb()
    planted: list[tuple[int, int]] = []

    def keep_planted(pairs):  # a short text with one word changed can fall below the threshold: not a target
        planted.extend((a, b) for a, b, similarity in pairs if similarity >= threshold)

    if method == "minhash":
        signer, seconds = Signer(), 0.0
        for texts, pairs in batches(examples):
            keep_planted(pairs)
            started = time.perf_counter()
            signer.add(texts)
            seconds += time.perf_counter() - started
        started = time.perf_counter()
        clusters = find_clusters(signer, "near", threshold)
        cluster_seconds = time.perf_counter() - started
        seconds += cluster_seconds
        label = np.full(examples, -1, dtype=np.int64)
        for number, cluster in enumerate(clusters):
            label[cluster.members] = number
        found = sum(label[a] >= 0 and label[a] == label[b] for a, b in planted)
        joined = sorted(_pairs_joined(clusters)) if examples <= 20_000 else None
        return {"method": method, "examples": examples, "seconds": seconds, "cluster_seconds": cluster_seconds,
                "peak_mb": _peak_mb(), "idle_mb": idle, "clusters": len(clusters), "planted": len(planted),
                "planted_found": int(found), "pairs": joined}
    texts = []
    for batch, pairs in batches(examples):
        texts += batch
        keep_planted(pairs)
    started = time.perf_counter()
    sets = [{hash(s) for s in shingles(text)} for text in texts]
    above = []
    for i in range(len(sets)):  # every pair, exact Jaccard: the baseline
        a = sets[i]
        for j in range(i + 1, len(sets)):
            b = sets[j]
            shared = len(a & b)
            if shared and shared / (len(a) + len(b) - shared) >= threshold:
                above.append((i, j))
    seconds = time.perf_counter() - started
    joined = set(above)
    return {"method": method, "examples": examples, "seconds": seconds, "cluster_seconds": None,
            "peak_mb": _peak_mb(), "idle_mb": idle, "clusters": None, "planted": len(planted),
            "planted_found": sum(pair in joined for pair in planted), "pairs": sorted(above)}


def _in_child(method: str, examples: int, threshold: float) -> dict:
    command = [sys.executable, __file__, "--child", method, "--examples", str(examples), "--threshold", str(threshold)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def run(examples: int = 1_000_000, naive: int = 10_000, threshold: float = 0.8, measured: int | None = None
        ) -> list[dict]:
    """Rows of the table: MinHash/LSH and the naive scan on the `naive` subset, MinHash/LSH on `measured`
    examples (default: all of `examples`; fewer where the full size does not fit the time at hand, then
    extrapolated linearly to `examples` and labelled), and the naive scan extrapolated to `examples` (time
    quadratically, memory linearly; labelled)."""
    measured = measured or examples
    minhash_subset = _in_child("minhash", naive, threshold)
    naive_subset = _in_child("naive", naive, threshold)
    exact_pairs = {tuple(p) for p in naive_subset.pop("pairs")}
    lsh_pairs = {tuple(p) for p in minhash_subset.pop("pairs")}
    # Clusters join pairs transitively, so the comparison is one way: how many of the naive scan's pairs
    # above the threshold the clusters join.
    minhash_subset["naive_pairs_joined"] = f"{len(exact_pairs & lsh_pairs)}/{len(exact_pairs)}"
    minhash_full = _in_child("minhash", measured, threshold) if measured != naive else dict(minhash_subset)
    minhash_full.pop("pairs", None)
    rows = [minhash_subset, naive_subset, minhash_full]
    if measured != examples:
        rows.append(_extrapolated(minhash_full, examples / measured, time_power=1))
    rows.append(_extrapolated(naive_subset, examples / naive, time_power=2))
    for row in rows:
        row.setdefault("extrapolated", False)
        row.setdefault("naive_pairs_joined", None)
        row["ratio"] = None
    minhash_subset["ratio"] = naive_subset["seconds"] / minhash_subset["seconds"]
    rows[-2]["ratio"] = rows[-1]["seconds"] / rows[-2]["seconds"]  # at `examples`, both sides
    return rows


def _extrapolated(row: dict, scale: float, time_power: int) -> dict:
    return {**row, "examples": round(row["examples"] * scale), "seconds": row["seconds"] * scale ** time_power,
            "peak_mb": row["idle_mb"] + (row["peak_mb"] - row["idle_mb"]) * scale, "planted": None,
            "planted_found": None, "naive_pairs_joined": None, "extrapolated": True,
            "how": "time ∝ n, memory ∝ n" if time_power == 1 else "time ∝ n², memory ∝ n"}


def table(rows: list[dict]) -> str:
    lines = ["| method | examples | wall s | peak RSS MB (idle) | planted pairs found | naive pairs joined "
             "| naive / MinHash time |", "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        label = "MinHash/LSH" if row["method"] == "minhash" else "naive pairwise Jaccard"
        if row["extrapolated"]:
            label += f", EXTRAPOLATED ({row['how']})"
        found = "—" if row["planted"] is None else f"{row['planted_found']:,}/{row['planted']:,}"
        ratio = "" if row["ratio"] is None else f"{row['ratio']:,.0f}×"
        lines.append(f"| {label} | {row['examples']:,} | {row['seconds']:,.1f} | {row['peak_mb']:,.0f} "
                     f"({row['idle_mb']:.0f}) | {found} | {row['naive_pairs_joined'] or '—'} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1_000_000)
    parser.add_argument("--naive", type=int, default=10_000, help="examples the naive scan runs on")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--measured", type=int, help="run MinHash/LSH on this many and extrapolate to --examples")
    parser.add_argument("--child", choices=["minhash", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.examples, args.threshold)))
        return
    rows = run(args.examples, args.naive, args.threshold, args.measured)
    print(f"Examples of 30-600 words (log-normal, median 150), one in {PLANT_EVERY} a planted copy (half exact once "
          "normalised, half near: one word in 40-120 replaced; pairs counted where the true Jaccard ≥ threshold); "
          f"threshold {args.threshold}, 128 permutations, word 5-shingles; "
          f"clustering {rows[2]['cluster_seconds']:.1f} s of the MinHash wall time at {rows[2]['examples']:,}")
    print(table(rows))


if __name__ == "__main__":
    main()
