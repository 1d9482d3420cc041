"""Code accuracy: run the completion's last Python code block against the sample's tests.

The code runs under bubblewrap (workers/rewards/sandbox.py says what it can and
cannot reach, and why); workers/rewards/sandbox_runner.py runs the tests inside.
Expected outputs never enter the sandbox: the runner reports a SHA-256 of the
normalised stdout and the JSON of a function's return value, and this process
compares, so forging the report gains nothing. Where the sandbox cannot start,
code_accuracy raises SandboxUnavailable: no model code runs under a weaker guard.

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
import re

from workers.rewards.base import Reward, Sample
from workers.rewards.extract import MAX_SCAN_CHARS, answer_text
from workers.rewards.sandbox import run_in_sandbox
from workers.rewards.sandbox_runner import output_digest

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
) -> Reward:
    """Share of sample.tests the completion's code passes. Never raises on model output
    (SandboxUnavailable says the machine cannot run the sandbox at all)."""
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
    job = {"code": code, "tests": [_to_sandbox(test) for test in tests], "limits": limits}
    report = run_in_sandbox(job, timeout_s=len(tests) * (timeout_s + 1.0))
    if "error" in report:
        return Reward.zero("sandbox error", code_chars=len(code), sandbox_error=report["error"])

    results = [_judge(test, outcome) for test, outcome in zip(tests, report["results"])]
    passed = sum(result["passed"] for result in results)
    details = {
        "code_chars": len(code),
        "passed": passed,
        "total": len(tests),
        "tests": results,
        "sandbox": report["sandbox"],
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
