"""Judge throughput: samples judged per second against an OpenAI-shaped server on loopback that takes 50 ms a
request, at concurrency 1, 8 and 32; then the same samples again, served from the cache.

    python benchmarks/judge_throughput.py [--samples 128] [--latency-ms 50]

The judge is workers.rewards.judge.Judge with the real OpenAI backend (its HTTP pool, retries on 429/5xx)
and the default judge prompt; the server is tests/fake_openai.py answering every request with a verdict after
the latency. Each concurrency judges fresh samples (an empty cache). The re-score uses the in-memory cache
(the trainer's; the app's is the JudgeVerdict table, one indexed query per chunk of 256 samples).
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _verdict(message: str) -> str:
    return "REASON: the final answer matches the reference\nVERDICT: correct"


def run(samples: int = 128, latency_s: float = 0.05, concurrencies=(1, 8, 32)) -> list[dict]:
    """One row per concurrency (samples/s, ratio to the first) and one for the re-score from the cache."""
    from tests.fake_openai import MODEL, FakeServer
    from workers.generation.openai_backend import OpenAIBackend
    from workers.rewards.base import Sample
    from workers.rewards.judge import DEFAULT_PROMPT, Judge, MemoryCache

    server = FakeServer()
    server.reply, server.delay = _verdict, latency_s
    rows, base = [], None
    try:
        for concurrency in concurrencies:
            batch = [Sample(completion=f"<think>work</think>\n{i}", reference=str(i), prompt=f"c{concurrency} #{i}")
                     for i in range(samples)]
            cache = MemoryCache()
            client = OpenAIBackend(server.url, MODEL, max_concurrency=concurrency, retry_statuses=[429],
                                   retry_timeouts=False)
            judge = Judge(client, DEFAULT_PROMPT, name="bench", prompt_version="default v1", cache=cache,
                          concurrency=concurrency)
            start = time.perf_counter()
            verdicts = judge.verdicts(batch)
            seconds = time.perf_counter() - start
            assert all(v.correct for v in verdicts) and judge.counts.calls == samples
            rate = samples / seconds
            base = base or rate
            rows.append({"run": f"concurrency {concurrency}", "samples": samples, "calls": judge.counts.calls,
                         "seconds": round(seconds, 3), "samples_per_s": round(rate, 1), "ratio": round(rate / base, 2)})
            if concurrency == concurrencies[-1]:  # the same samples again: every verdict from the cache
                again = Judge(client, DEFAULT_PROMPT, name="bench", prompt_version="default v1", cache=cache,
                              concurrency=concurrency)
                start = time.perf_counter()
                again.verdicts(batch)
                seconds = time.perf_counter() - start
                assert again.counts.calls == 0 and again.counts.cached == samples
                rows.append({"run": "re-score (cached)", "samples": samples, "calls": 0,
                             "seconds": round(seconds, 4), "samples_per_s": round(samples / seconds, 1),
                             "ratio": round(samples / seconds / base, 1)})
            client.close()
    finally:
        server.stop()
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    rows = run(args.samples, args.latency_ms / 1000)
    print(f"judge throughput, {args.samples} samples, {args.latency_ms:g} ms a request (loopback)")
    print(f"{'run':<20} {'calls':>6} {'seconds':>9} {'samples/s':>10} {'x conc. 1':>10}")
    for row in rows:
        print(f"{row['run']:<20} {row['calls']:>6} {row['seconds']:>9} {row['samples_per_s']:>10} {row['ratio']:>10}")


if __name__ == "__main__":
    main()
