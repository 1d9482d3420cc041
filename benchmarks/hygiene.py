"""Data hygiene benchmark (issue 19): decontamination, near-duplicate detection and the judge, each against
its obvious baseline in the same run.

    python benchmarks/hygiene.py [--examples N] [--naive N] [--skip decontam,dedup,judge]

- decontamination (benchmarks/decontam.py): the n-gram index over N examples against 3 benchmark sets of
  a few thousand prompts, against the naive scan on a subset, extrapolated to N and labelled so;
- near-duplicates (benchmarks/dedup.py): MinHash/LSH over N examples against naive pairwise Jaccard on a
  subset, extrapolated (quadratically) and labelled so;
- the judge (benchmarks/judge_throughput.py): samples/s against a loopback OpenAI-shaped server answering
  in 50 ms, at concurrency 1, 8 and 32, and a re-score from the cache.
Each part runs its measurements in child processes, so peak memory is each method's own.
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import decontam  # noqa: E402
import dedup  # noqa: E402
import judge_throughput  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1_000_000)
    parser.add_argument("--naive", type=int, default=10_000, help="examples the naive baselines run on")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: decontam, dedup, judge")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}; nproc={os.cpu_count()}, python {platform.python_version()}; "
          "load average at start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    if "decontam" not in skip:
        print(f"\n## Decontamination, {args.examples:,} examples, 10-grams\n")
        print(decontam.table(decontam.run(args.examples, args.naive)), flush=True)
    if "dedup" not in skip:
        print(f"\n## Near-duplicates, {args.examples:,} examples, threshold 0.8\n")
        print(dedup.table(dedup.run(args.examples, args.naive)), flush=True)
    if "judge" not in skip:
        print("\n## Judge throughput, 128 samples, 50 ms a request (loopback)\n")
        print("| run | calls | seconds | samples/s | × concurrency 1 |\n|---|---:|---:|---:|---:|")
        for row in judge_throughput.run():
            print(f"| {row['run']} | {row['calls']} | {row['seconds']} | {row['samples_per_s']} | {row['ratio']} |")


if __name__ == "__main__":
    main()
