"""Score samples in worker processes, each sample bounded in time for real.

Each worker is a plain subprocess (`python -m workers.rewards.pool`), so it can
be started from a Celery prefork child (daemonic processes may not use
multiprocessing's children) and runs scoring in its main thread, where
math-verify's signal-based timeouts work. A worker that overruns a sample's
deadline (sympy stuck in C on a power tower, a runaway allocation) is killed
and replaced, and that sample scores 0 with the reason.

A recipe with a judge model (`llm_judge`) is given its `Judge`: each chunk of
samples is judged first, its calls in parallel threads here, and the workers
then only read the verdicts attached to the samples.
"""

import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from multiprocessing.connection import Connection, wait

from workers.rewards.base import Sample
from workers.rewards.sandbox import require_sandbox

MEMORY_LIMIT_BYTES = 4 * 1024**3  # per worker: a runaway allocation raises MemoryError, not the OOM killer
JUDGE_CHUNK = 256  # samples judged at once: enough to keep `concurrency` calls busy, results flow on meanwhile


class ScoringPool:
    """`ScoringPool(recipe_spec, processes)`, then `pool.map(samples)` yields one score dict per sample, in order."""

    def __init__(self, recipe_spec: dict, processes: int | None = None, timeout_s: float = 20.0, judge=None):
        if any(component.get("name") == "code_accuracy" for component in recipe_spec.get("components", ())):
            require_sandbox()  # a job fails at once, naming the cause, instead of scoring every sample 0
        self.recipe_spec = recipe_spec
        self.timeout_s = timeout_s
        self.judge = judge  # a workers.rewards.judge.Judge, for a recipe with llm_judge
        self.workers = [_Worker(recipe_spec) for _ in range(processes or os.cpu_count() or 1)]

    def map(self, samples: Iterable[Sample]) -> Iterator[dict]:
        if self.judge is None:
            yield from self._map(samples)
            return
        samples = iter(samples)
        while chunk := list(islice(samples, JUDGE_CHUNK)):
            yield from self._map(self.judge.attach(chunk))

    def _map(self, samples: Iterable[Sample]) -> Iterator[dict]:
        pending = iter(enumerate(samples))
        results: dict[int, dict] = {}
        next_out = 0
        busy: dict[_Worker, tuple[int, float]] = {}  # worker → (sample index, deadline)
        exhausted = False
        while True:
            for worker in self.workers:
                if worker not in busy and not exhausted:
                    item = next(pending, None)
                    if item is None:
                        exhausted = True
                        break
                    worker.send(item)
                    busy[worker] = (item[0], time.monotonic() + self.timeout_s)
            if not busy:
                break
            deadline = min(d for _, d in busy.values())
            ready = wait([w.conn for w in busy], timeout=max(0.0, deadline - time.monotonic()))
            for worker in list(busy):
                index, due = busy[worker]
                if worker.conn in ready:
                    try:
                        results[index] = worker.receive()
                    except (EOFError, OSError):  # the worker died (killed by a memory limit, say)
                        results[index] = _failed(f"the scoring process died (exit {worker.exit_code()})")
                        self._replace(worker)
                    del busy[worker]
                elif time.monotonic() >= due:
                    results[index] = _failed(f"scoring took longer than {self.timeout_s:g} s")
                    self._replace(worker)
                    del busy[worker]
            while next_out in results:
                yield results.pop(next_out)
                next_out += 1

    def _replace(self, worker: "_Worker") -> None:
        worker.kill()
        self.workers[self.workers.index(worker)] = _Worker(self.recipe_spec)

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        if self.judge is not None:
            self.judge.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _failed(reason: str) -> dict:
    return {"total": 0.0, "components": {}, "error": reason}


class _Worker:
    def __init__(self, recipe_spec: dict):
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workers.rewards.pool", str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w),
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            preexec_fn=_limit_memory,
            start_new_session=True,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.to_child = Connection(to_child_w, readable=False)
        self.conn = Connection(from_child_r, writable=False)
        self.to_child.send(recipe_spec)

    def send(self, item) -> None:
        self.to_child.send(item)

    def receive(self) -> dict:
        return self.conn.recv()

    def exit_code(self):
        return self.proc.poll()

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, 9)  # the whole group: a code sandbox it started goes too
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.to_child.close()
        self.conn.close()


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def _serve(read_fd: int, write_fd: int) -> None:
    from workers.rewards.recipes import Recipe

    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    recipe = Recipe.from_spec(inbox.recv())
    while True:
        try:
            index, sample = inbox.recv()
        except EOFError:
            return
        try:
            result = recipe.score(sample)
        except MemoryError:
            result = _failed("scoring ran out of memory")
        except Exception as exc:  # a component bug must not take the worker down
            result = _failed(f"scoring failed: {type(exc).__name__}: {str(exc)[:300]}")
        outbox.send(result)


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
