"""Code-reward sandbox benchmark: bubblewrap against the hand-written sandbox it replaced.

    python benchmarks/sandbox.py [--samples 200] [--threads 2] [--old-commit 3c9f7e2]

Both run the same samples in the same run: a right solution of "add two numbers"
against 2 stdin tests (so each sample is one sandbox start and two test forks).
The old sandbox (namespaces by hand, a uid drop, an audit-hook fallback) is loaded
from the git commit before the switch, into a temporary package, unchanged.
Reported: per-sample wall time p50/p99 one at a time (start-up dominates), and
samples/s with N threads at once (what a ScoringPool worker's parallel calls see).
"""

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workers.rewards.base import Sample  # noqa: E402
from workers.rewards.code import code_accuracy  # noqa: E402

COMPLETION = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
TESTS = ({"input": "1 2\n", "output": "3\n"}, {"input": "10 -4\n", "output": "6\n"})


def old_code_accuracy(commit: str, folder: Path):
    """workers/rewards/code.py and sandbox_runner.py as of `commit`, importable on their own."""
    for name in ("code.py", "sandbox_runner.py"):
        source = subprocess.run(["git", "show", f"{commit}:workers/rewards/{name}"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout
        source = source.replace("from workers.rewards.sandbox_runner import", "from old_sandbox_runner import")
        (folder / f"old_{name}").write_text(source)
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("old_code", folder / "old_code.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # The old code runs its runner by module name from its own folder.
    module.BOOTSTRAP = module.BOOTSTRAP.replace("import sandbox_runner", "import old_sandbox_runner as sandbox_runner")
    return module.code_accuracy


def measure(score, samples: int, threads: int) -> dict:
    sample = Sample(COMPLETION, tests=TESTS, domain="code")
    assert score(sample).value == 1.0  # warm (the new one finds its mounts and compiles its filter once)
    latencies = []
    for _ in range(samples):
        start = time.perf_counter()
        value = score(sample).value
        latencies.append(time.perf_counter() - start)
        assert value == 1.0
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        values = list(pool.map(lambda _: score(sample).value, range(samples)))
    wall = time.perf_counter() - start
    assert values == [1.0] * samples
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * cuts[98], "per_s": samples / wall}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--old-commit", default="3c9f7e2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        old = measure(old_code_accuracy(args.old_commit, Path(folder)), args.samples, args.threads)
    new = measure(code_accuracy, args.samples, args.threads)
    print(f"{args.samples} samples x {len(TESTS)} tests, {args.threads} threads for throughput")
    print(f"| sandbox | p50 ms | p99 ms | samples/s ({args.threads} threads) |")
    print("|---|---:|---:|---:|")
    for name, row in (("hand-written (before)", old), ("bubblewrap", new)):
        print(f"| {name} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['per_s']:.1f} |")
    print(f"bubblewrap / before, throughput: {new['per_s'] / old['per_s']:.2f}x; "
          f"p50 {new['p50_ms'] / old['p50_ms']:.2f}x")


if __name__ == "__main__":
    main()
