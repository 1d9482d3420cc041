"""Code accuracy: run the completion's last Python code block against the sample's tests.

Threat model. The code is written by a model under RL, so it is untrusted and
possibly adversarial: it may loop, fork-bomb, allocate or print without bound,
write files, open sockets to Postgres or Redis, read secrets from the
environment, leave background processes behind, or try to learn the expected
answers. It runs on a worker that holds database credentials. It must not get
out, must finish in bounded time, and must leave nothing behind.

Mechanisms (workers/rewards/sandbox_runner.py does the work; details["sandbox"]
says which were in force for each call):
  * Process: one `python -I -S` runner per sample, in its own session, with a
    minimal environment (no DATABASE_URL, SECRET_KEY, ...). It forks a child per
    test. The caller kills the runner's process group if the runner overruns; the
    runner dies with its caller (PR_SET_PDEATHSIG), so a scoring pool that kills
    its worker takes the sandbox along.
  * Lifetime: the runner makes itself PID 1 of a new PID namespace, so when it
    dies for any reason the kernel kills every process the code started; its
    own /proc shows only those processes (not the worker's command lines).
  * User (when the worker is root): each test child drops to a random,
    otherwise unused uid (setgroups/setgid/setuid, no_new_privs). It cannot
    write root's files, read other processes' /proc/*/environ, or signal them.
  * Processes: RLIMIT_NPROC on that uid (it holds nothing else, so the limit
    holds although the worker runs as root; RLIMIT_NPROC does not bind root
    itself). After each test a helper with that uid calls kill(-1, SIGKILL),
    which reaches every process of the uid, also those that left the session.
    The runner is a subreaper and reaps them all.
  * Limits per test: RLIMIT_CPU, RLIMIT_AS (memory), RLIMIT_FSIZE, RLIMIT_NOFILE,
    RLIMIT_CORE=0; a wall-clock timeout; stdout, stderr and the result are
    read under a cap (output_limit_bytes) and the test is killed past it.
  * Network: the runner enters a new network namespace (unshare(CLONE_NEWNET)
    through ctypes, as root): only a loopback that is down, so connect() fails
    with ENETUNREACH.
  * Files: a new mount namespace with private, size-limited tmpfs over every
    world-writable directory (/tmp, /var/tmp, /dev/shm, /run/lock); the work
    directory lives there and disappears with the namespace.
  * Fallback: where a kernel mechanism is unavailable (not root, or no
    namespaces in the container), an audit hook in the child refuses the same
    events (socket.*, fork/exec/subprocess, writes outside the work directory,
    other processes' /proc, ctypes). Python-level hooks can be bypassed; they
    are a best effort, not a boundary. Docker's default seccomp profile refuses
    unshare() without CAP_SYS_ADMIN: in such a container the uid mechanisms
    hold but network and files fall back to the hook (check details["sandbox"]).
  * Answers: expected outputs never enter the sandbox. The runner reports a
    SHA-256 of the normalised stdout and the JSON of a function's return value,
    and this process compares. Forging the report gains nothing.
Not covered: reading world-readable files (the source tree, /etc); total memory
of all processes is bounded only by processes x RLIMIT_AS (no cgroup); only the
standard library is importable (-S), and where the interpreter is not readable
by the sandbox uid (pyenv under /root) only the modules in
sandbox_runner.WARM_MODULES.

Test dict shapes (sample.tests is a sequence of these; one sample may mix them):
  stdin/stdout: {"input": "1 2\\n", "output": "3\\n"}
      The code runs as __main__ with `input` on stdin. Passes when stdout equals
      `output` after removing trailing whitespace on each line and trailing blank
      lines, and the program exits normally (exit status 0).
  function call: {"fn": "add", "args": [1, 2], "kwargs": {}, "expected": 3}
      The code is run as a module named __solution__ (so an `if __name__ ==
      "__main__":` block does not run), then fn(*args, **kwargs) is called. Passes
      when the return value, through a JSON round trip, == `expected` (also through
      JSON: tuples become lists, 1 == 1.0). args and kwargs are optional.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from workers.rewards.base import Reward, Sample
from workers.rewards.extract import MAX_SCAN_CHARS, answer_text
from workers.rewards.sandbox_runner import output_digest

RUNNER_DIR = str(Path(__file__).resolve().parent)
# Imported rather than run as a script, so that its cached bytecode is used (saves ~8 ms a
# call). Its directory leaves sys.path at once: the code must not import our modules.
BOOTSTRAP = "import sys; sys.path.insert(0, sys.argv[1]); import sandbox_runner; del sys.path[0]; sandbox_runner.main(sys.argv[2:])"
SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"}
STARTUP_ALLOWANCE_S = 5.0  # on top of the tests' own timeouts, before the caller kills the runner
MAX_CODE_CHARS = 100_000
STDERR_IN_DETAILS = 300

# A fence line: ``` at the start of a line, then an optional language tag.
FENCE_LINE_RE = re.compile(r"^[ \t]*```[ \t]*([^\s`]*)[^\n]*$", re.MULTILINE)
PYTHON_TAGS = {"", "python", "py", "python3"}  # blocks in other languages are not run


def code_accuracy(
    sample: Sample,
    *,
    timeout_s: float = 2.0,
    memory_mb: int = 256,
    output_limit_bytes: int = 1_000_000,
    max_processes: int = 16,
    file_size_mb: int = 16,
    kernel_isolation: bool = True,
) -> Reward:
    """Share of sample.tests the completion's code passes. Never raises on model output.

    kernel_isolation=False skips namespaces and the uid drop, leaving only the
    Python-level fallback: for testing that fallback, never for real use.
    """
    completion = _as_text(sample.completion)
    code = extract_code(completion)
    if code is None:
        return Reward.zero("no code block")
    if len(code) > MAX_CODE_CHARS:
        return Reward.zero("code too long", code_chars=len(code))
    tests = list(sample.tests or ())
    if not tests:
        return Reward.zero("no tests", code_chars=len(code))
    bad = [i for i, test in enumerate(tests) if _test_kind(test) is None]
    if bad:
        return Reward.zero("invalid tests", code_chars=len(code), invalid_tests=bad)

    limits = {
        "timeout_s": timeout_s,
        "memory_mb": memory_mb,
        "output_bytes": output_limit_bytes,
        "processes": max_processes,
        "file_mb": file_size_mb,
    }
    report = run_sandboxed(code, [_to_sandbox(test) for test in tests], limits, kernel_isolation)
    if "error" in report:
        return Reward.zero("sandbox error", code_chars=len(code), sandbox_error=report["error"])

    results = [_judge(test, outcome) for test, outcome in zip(tests, report["results"])]
    passed = sum(result["passed"] for result in results)
    details = {
        "code_chars": len(code),
        "passed": passed,
        "total": len(tests),
        "tests": results,
        "sandbox": {key: report["sandbox"][key] for key in ("uid", "workdir")} | report["sandbox"]["mechanisms"],
    }
    if passed == 0:
        details["reason"] = _reason(results)
    return Reward(passed / len(tests), details)


# ---------------------------------------------------------------- extracting the code


def _as_text(completion) -> str:
    if isinstance(completion, bytes):  # a completion that never got decoded
        return completion.decode("utf-8", "replace")
    return completion if isinstance(completion, str) else ""


def extract_code(completion: str) -> str | None:
    """The last Python (or unlabelled) fenced block, from the <answer> span when it has one."""
    for text in (answer_text(completion), completion[-MAX_SCAN_CHARS:]):
        blocks = [code for tag, code in fenced_blocks(text) if tag.lower() in PYTHON_TAGS]
        if blocks:
            return blocks[-1]
    return None


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language tag, content) of each closed fenced block, pairing fences in order.

    Pairing in order matters: the closing fence of a ```cpp block must not open a block.
    An unclosed last fence (a truncated completion) yields nothing.
    """
    blocks, opening = [], None
    for fence in FENCE_LINE_RE.finditer(text):
        if opening is None:
            opening = fence
        else:
            blocks.append((opening.group(1), text[opening.end() + 1 : fence.start()]))
            opening = None
    return blocks


# ---------------------------------------------------------------- tests


def _test_kind(test) -> str | None:
    """"stdio", "function", or None for a test of neither shape."""
    if not isinstance(test, dict) or not _is_json(test):
        return None
    if isinstance(test.get("input"), str) and isinstance(test.get("output"), str):
        return "stdio"
    if (
        isinstance(test.get("fn"), str)
        and "expected" in test
        and isinstance(test.get("args", []), (list, tuple))
        and isinstance(test.get("kwargs", {}), dict)
    ):
        return "function"
    return None


def _is_json(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _to_sandbox(test: dict) -> dict:
    """What the sandbox may see: inputs only, never the expected answer."""
    if _test_kind(test) == "stdio":
        return {"stdin": test["input"]}
    return {"fn": test["fn"], "args": list(test.get("args", [])), "kwargs": dict(test.get("kwargs", {}))}


def _judge(test: dict, outcome: dict) -> dict:
    status = outcome["status"]
    if status == "ok":
        if _test_kind(test) == "stdio":
            right = outcome["stdout_sha256"] == output_digest(test["output"])
        else:
            right = outcome["result"] is not None and _json_equal(outcome["result"], test["expected"])
        status = "ok" if right else "wrong answer"
    result = {
        "passed": status == "ok",
        "status": status,
        "elapsed": outcome["elapsed"],
        "stderr": outcome["stderr_tail"][-STDERR_IN_DETAILS:],
    }
    if outcome.get("leftover_processes"):  # should never happen; worth seeing if it does
        result["leftover_processes"] = True
    return result


def _json_equal(result_json: str, expected) -> bool:
    try:
        return json.loads(result_json) == json.loads(json.dumps(expected))
    except (ValueError, TypeError, RecursionError):
        return False


def _reason(results: list[dict]) -> str:
    statuses = sorted({result["status"] for result in results})
    if statuses == ["syntax error"]:
        return "syntax error"
    return "no test passed: " + ", ".join(statuses)


# ---------------------------------------------------------------- the sandbox process


def run_sandboxed(code: str, tests: list[dict], limits: dict, kernel_isolation: bool = True) -> dict:
    """Run the runner on one job; its report, or {"error": ...}. Kills everything on overrun."""
    # Used only where the runner gets no private /tmp; removed here even if the runner is killed.
    with tempfile.TemporaryDirectory(prefix="r1-sandbox-", ignore_cleanup_errors=True) as workdir:
        uid = sandbox_uid() if kernel_isolation else None
        job = {"code": code, "tests": tests, "limits": limits, "uid": uid, "namespaces": kernel_isolation, "workdir": workdir}
        return _run_runner(job)


def _run_runner(job: dict) -> dict:
    uid = job["uid"]
    payload = json.dumps(job).encode()  # ensure_ascii: lone surrogates and NULs travel as escapes
    deadline_s = STARTUP_ALLOWANCE_S + len(job["tests"]) * (job["limits"]["timeout_s"] + 1.0)
    runner = subprocess.Popen(
        runner_command(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=SANDBOX_ENV,
        cwd="/",
        start_new_session=True,
        close_fds=True,
    )
    try:
        # The runner caps what the code prints, so its report is small.
        out, err = runner.communicate(payload, timeout=deadline_s)
    except subprocess.TimeoutExpired:
        _kill_runner(runner, uid)
        return {"error": f"the sandbox ran over {deadline_s:.0f} s"}
    if runner.returncode != 0:
        _kill_uid(uid)
        return {"error": f"runner exit {runner.returncode}: {err.decode(errors='replace')[-STDERR_IN_DETAILS:]}"}
    try:
        report = json.loads(out)
        complete = len(report["results"]) == len(job["tests"])
    except (ValueError, KeyError, TypeError):
        complete = False
    return report if complete else {"error": "unreadable report"}


def _kill_runner(runner: subprocess.Popen, uid: int | None) -> None:
    """Kill the runner's session (not reaped yet, so its id cannot have been reused), then the code's uid."""
    try:
        os.killpg(runner.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    runner.communicate()
    _kill_uid(uid)


def _kill_uid(uid: int | None) -> None:
    """The code's processes are in sessions of their own: without the runner, only their uid finds them."""
    if uid is not None:
        subprocess.run(runner_command("--kill-uid", str(uid)), env=SANDBOX_ENV, timeout=10)


def runner_command(*args: str) -> list[str]:
    """An isolated interpreter (-I: no environment variables, user site or script directory; -S: no site)."""
    return [sys.executable, "-I", "-S", "-c", BOOTSTRAP, RUNNER_DIR, *args]


# A uid of our own per sample, so that RLIMIT_NPROC and kill(-1) concern only this
# sample's processes. Above the ids a system hands out, below the 32-bit edge.
SANDBOX_UID_RANGE = (1_000_000, 2_000_000_000)


def sandbox_uid() -> int | None:
    """A random uid inside this user namespace's map, or None when we cannot switch uid."""
    if os.geteuid() != 0:
        return None
    try:
        mapped = [tuple(map(int, line.split())) for line in Path("/proc/self/uid_map").read_text().splitlines()]
    except (OSError, ValueError):
        return None
    # The second range is for rootless containers, which map only 0..65535.
    for low, high in (SANDBOX_UID_RANGE, (10_000, 65_000)):
        for inside, _outside, count in mapped:
            start, end = max(inside, low), min(inside + count, high)
            if end - start >= 1000:
                return random.SystemRandom().randrange(start, end)
    return None
