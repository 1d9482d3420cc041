"""code_accuracy: right, partly right and wrong code, and hostile code that must score 0,
in bounded time, leaving no process and no file behind.

No database: each call runs the real sandbox (bubblewrap, workers/rewards/sandbox.py).
The hostile rows are attacks; each checks *what* stopped it through its stderr
("No such file" is the empty root, "Operation not permitted" the seccomp filter), so a
row cannot pass because of some unrelated error.
"""

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from workers.rewards.base import Sample
from workers.rewards.code import code_accuracy, extract_code
from workers.rewards.sandbox import SandboxUnavailable

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 1.0
SAFETY_MARGIN_S = 2.0  # a bound on wall time, not a speed test
TOKEN = secrets.token_hex(6)  # names this run's files, processes and secret
SLEEP_S = 900_000 + int(TOKEN[:4], 16)  # an argument no other `sleep` on the machine has
SECRET_VAR, SECRET = "R1_SANDBOX_TEST_SECRET", f"secret-{TOKEN}"
OUTSIDE = [f"/tmp/pwned-{TOKEN}", f"/var/tmp/pwned-{TOKEN}", f"/dev/shm/pwned-{TOKEN}", str(ROOT / f"pwned-{TOKEN}")]
# An upload holding the expected outputs of the very tests the code is scored on.
UPLOAD = Path("/tmp") / f"r1-upload-{TOKEN}" / "prompts.jsonl"


def block(code: str) -> str:
    """A completion with the code in the <answer> span, as an R1-style model writes it."""
    return f"<think>Let me write it.</think>\n<answer>\n```python\n{textwrap.dedent(code).strip()}\n```\n</answer>"


def stdio(stdin: str, stdout: str) -> dict:
    return {"input": stdin, "output": stdout}


def call(fn: str, args: list, expected, **kwargs) -> dict:
    return {"fn": fn, "args": args, "kwargs": kwargs, "expected": expected}


ADD = (stdio("1 2\n", "3\n"), stdio("10 -4\n", "6\n"))
RIGHT_ADD = "a, b = map(int, input().split())\nprint(a + b)"


@dataclass
class Case:
    completion: object
    tests: tuple
    score: float
    statuses: tuple = ()  # every test's status, when given
    reason: str = ""  # details["reason"] starts with this (score 0)
    stderr: str | tuple = ""  # in the first test's stderr (any of a tuple): shows what stopped the code


CASES = {
    # --- right, partly right and wrong code
    # The plain case: read stdin, print the answer.
    "stdin_right": Case(block(RIGHT_ADD), ADD, 1.0, ("ok", "ok")),
    # Trailing spaces and blank lines do not count.
    "stdin_trailing_whitespace": Case(
        block("a, b = map(int, input().split())\nprint(a + b, '  ')\nprint()\nprint()"),
        ADD, 1.0,
    ),
    # A main guard runs in stdin style: the code is __main__.
    "stdin_main_guard": Case(
        block("def main():\n    print(sum(map(int, input().split())))\nif __name__ == '__main__':\n    main()"),
        ADD, 1.0,
    ),
    # The function style, positional and keyword arguments.
    "function_right": Case(
        block("def add(a, b):\n    return a + b"),
        (call("add", [1, 2], 3), call("add", [], 5, a=2, b=3)), 1.0,
    ),
    # Compared after a JSON round trip: a tuple equals the expected list, 2 == 2.0.
    "function_json_round_trip": Case(block("def pair(x):\n    return (x, x * 1.0)"), (call("pair", [2], [2, 2]),), 1.0),
    # A main guard does not run in function style (it would wait for stdin).
    "function_main_guard_skipped": Case(
        block("def add(a, b):\n    return a + b\nif __name__ == '__main__':\n    input()"),
        (call("add", [1, 2], 3),), 1.0,
    ),
    # One test of two right.
    "partly_right": Case(
        block("a, b = map(int, input().split())\nprint(a + b if b > 0 else 0)"),
        ADD, 0.5, ("ok", "wrong answer"),
    ),
    # Runs fine, wrong output.
    "wrong_answer": Case(
        block("a, b = map(int, input().split())\nprint(a - b)"),
        ADD, 0.0, ("wrong answer",) * 2, "no test passed: wrong answer",
    ),
    # A wrong return value.
    "function_wrong": Case(
        block("def add(a, b):\n    return a * b"),
        (call("add", [1, 2], 3),), 0.0, ("wrong answer",),
    ),
    # Does not compile: one reason for the whole sample.
    "syntax_error": Case(
        block("def add(a, b)\n    return a + b"),
        (call("add", [1, 2], 3),), 0.0, ("syntax error",), "syntax error", "SyntaxError",
    ),
    # An exception: the traceback starts at the solution, not in the runner.
    "runtime_error": Case(
        block("raise ValueError('boom')"),
        ADD[:1], 0.0, ("runtime error",), "no test passed: runtime error", 'File "solution.py", line 1',
    ),
    # The right output but a failing exit status.
    "right_output_failing_exit": Case(block("print(3)\nraise SystemExit(1)"), ADD[:1], 0.0, ("runtime error",)),
    # sys.exit(0) is a normal end.
    "exit_zero": Case(block("import sys\nprint(3)\nsys.exit(0)"), ADD[:1], 1.0),
    # The function the test calls is not there.
    "missing_function": Case(
        block("def plus(a, b):\n    return a + b"),
        (call("add", [1, 2], 3),), 0.0, ("runtime error",), stderr="KeyError: 'add'",
    ),
    # A return value that JSON cannot hold cannot be compared.
    "result_not_json": Case(
        block("def add(a, b):\n    return object()"),
        (call("add", [1, 2], 3),), 0.0, ("runtime error",), stderr="not JSON serializable",
    ),
    # A standard-library import works (here the interpreter lives under /root, unreadable by the sandbox uid).
    "stdlib_import": Case(
        block("import math, heapq\nfrom collections import Counter\nprint(math.isqrt(int(input())))"),
        (stdio("17\n", "4\n"),), 1.0,
    ),
    # The environment holds nothing of the worker's (DATABASE_URL, the secret...).
    "minimal_environment": Case(
        block("import os\nprint(sorted(os.environ))"),
        (stdio("", "['HOME', 'LANG', 'PATH', 'PWD']\n"),), 1.0,
    ),
    # The root holds the interpreter's folders, the runner (/sandbox), /dev, /proc and /tmp:
    # no /etc, /run, /var, /home, /root, no checkout.
    "empty_root": Case(
        block("import os\nprint(sorted(os.listdir('/')))"),
        (stdio("", "['dev', 'lib', 'lib64', 'proc', 'sandbox', 'tmp', 'usr']\n"),), 1.0,
    ),
    # --- finding the code, and samples that cannot be scored
    # No fenced block at all.
    "no_code_block": Case("<answer>just add them: 3</answer>", ADD, 0.0, reason="no code block"),
    # A block in another language is not run.
    "other_language_only": Case("```cpp\nint main() { return 0; }\n```", ADD, 0.0, reason="no code block"),
    # The block in <answer> wins over a later one outside it.
    "answer_span_preferred": Case(block(RIGHT_ADD) + "\n```python\nprint(0)\n```", ADD, 1.0),
    # Without <answer>, the last block; an unclosed fence (a truncated completion) is ignored.
    "last_closed_block": Case(f"```python\nprint(0)\n```\n```\n{RIGHT_ADD}\n```\n```python\nprint(", ADD, 1.0),
    # The closing fence of a cpp block does not open a Python block.
    "fences_paired_in_order": Case(f"```cpp\nint x;\n```\nthen\n```python\n{RIGHT_ADD}\n```", ADD, 1.0),
    # Nothing to run against.
    "no_tests": Case(block(RIGHT_ADD), (), 0.0, reason="no tests"),
    # A test of neither shape is a data problem: reported, not run.
    "invalid_tests": Case(block(RIGHT_ADD), ({"input": 1, "output": "3"},), 0.0, reason="invalid tests"),
    # Arguments that JSON cannot carry are a data problem too.
    "test_not_json": Case(block("def f(x):\n    return 1"), (call("f", [{1, 2}], 1),), 0.0, reason="invalid tests"),
    # --- bad encodings
    # NUL bytes in the code do not compile.
    "nul_bytes": Case(block("print(3)\x00"), ADD[:1], 0.0, ("syntax error",), "syntax error"),
    # A lone surrogate (undecodable bytes kept with surrogateescape) does not compile either.
    "lone_surrogate": Case(block("print('\udcff')"), ADD[:1], 0.0, ("syntax error",), "syntax error"),
    # Undecoded UTF-8 bytes are decoded.
    "utf8_bytes": Case(block("print('café')").encode(), (stdio("", "café\n"),), 1.0),
    # Latin-1 bytes: the é is replaced, so the output is wrong, but nothing breaks.
    "latin1_bytes": Case(block("print('café')").encode("latin-1"), (stdio("", "café\n"),), 0.0, ("wrong answer",)),
    # Not text at all.
    "completion_none": Case(None, ADD, 0.0, reason="no code block"),
    # Megabytes of noise before the answer: only the tail is searched.
    "huge_completion": Case("x" * 5_000_000 + block(RIGHT_ADD), ADD, 1.0),
    # --- hostile code: 0 for the test, a reason, bounded time, nothing left behind
    # Fork bomb: RLIMIT_NPROC in the sandbox's user namespace stops it (fork fails with EAGAIN).
    "fork_bomb": Case(
        block("import os\nwhile True:\n    os.fork()"),
        ADD[:1], 0.0, ("runtime error",), stderr="Resource temporarily unavailable",
    ),
    # A fork bomb that ignores the failures: killed at the timeout, every process with it.
    "fork_bomb_persistent": Case(
        block("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"),
        ADD[:1], 0.0, ("timeout",), "no test passed: timeout",
    ),
    # Burning CPU forever.
    "infinite_loop": Case(block("while True:\n    pass"), ADD[:1], 0.0, ("timeout",), "no test passed: timeout"),
    # Sleeping forever uses no CPU: the wall-clock timeout catches it.
    "sleep_forever": Case(block("import time\ntime.sleep(10 ** 6)"), ADD[:1], 0.0, ("timeout",)),
    # 2 GB against RLIMIT_AS.
    "allocate_2gb": Case(
        block("x = bytearray(2 * 1024 ** 3)\nprint(len(x))"),
        ADD[:1], 0.0, ("memory limit",), "no test passed: memory limit",
    ),
    # Files outside its tmp: /tmp is the sandbox's own tmpfs, the rest is absent or read-only.
    "write_outside": Case(
        block(f"for path in {OUTSIDE!r} + ['/usr/lib/pwned-{TOKEN}']:\n"
              "    try:\n        open(path, 'w').write('pwned')\n"
              "    except OSError as e:\n        print(e)\nprint('pwned')"),
        (stdio("", "pwned\n"),), 0.0, ("wrong answer",),
    ),
    # Postgres and Redis over TCP: no network but a loopback that is down, and no socket() at all.
    "network": Case(
        block("import socket\nfor port in (5432, 6379):\n"
              "    socket.create_connection(('127.0.0.1', port), timeout=1).close()\nprint('connected')"),
        (stdio("", "connected\n"),), 0.0, ("runtime error",), stderr="Operation not permitted",
    ),
    # Postgres's and MariaDB's Unix sockets: not there (no /run, no /var), and socket() is refused anyway.
    "database_unix_sockets": Case(
        block("""
            import os, socket
            for path in ('/var/run/postgresql/.s.PGSQL.5432', '/run/postgresql/.s.PGSQL.5432',
                         '/run/mysqld/mysqld.sock', '/var/run/mysqld/mysqld.sock'):
                print(path, os.path.exists(path))
            socket.socket(socket.AF_UNIX).connect('/var/run/postgresql/.s.PGSQL.5432')
            print('connected')
        """),
        (stdio("", "connected\n"),), 0.0, ("runtime error",), stderr="Operation not permitted",
    ),
    # Any socket file anywhere it can look.
    "any_socket_file": Case(
        block("""
            import os, stat
            found = []
            for top in os.listdir('/'):
                if top == 'proc':
                    continue
                for folder, dirs, files in os.walk('/' + top):
                    for name in files + dirs:
                        try:
                            if stat.S_ISSOCK(os.lstat(os.path.join(folder, name)).st_mode):
                                found.append(os.path.join(folder, name))
                        except OSError:
                            pass
            print(found)
        """),
        (stdio("", "['a socket']\n"),), 0.0, ("wrong answer",),
    ),
    # The uploaded prompt file with the expected outputs of its own tests: not in its root.
    "read_own_tests": Case(
        block(f"print(open({str(UPLOAD)!r}).read())"),
        (stdio("", "3\n"),), 0.0, ("runtime error",), stderr="No such file or directory",
    ),
    # bwrap's init (PID 1) holds a minimal environment; the worker's processes are not visible.
    "proc_1_environ": Case(
        block(f"""
            import os
            found = [os.environ.get('{SECRET_VAR}', ''), os.environ.get('DATABASE_URL', '')]
            for pid in filter(str.isdigit, os.listdir('/proc')):
                try:
                    found += [e.decode() for e in open(f'/proc/{{pid}}/environ', 'rb').read().split(b'\\0')
                              if b'{SECRET_VAR}' in e]
                except OSError:
                    pass
            print(max(found, key=len).split('=')[-1] or 'nothing')
        """),
        (stdio("", f"{SECRET}\n"),), 0.0, ("wrong answer",),
    ),
    # A user namespace of its own (root in it, then mount and unshare more): refused by seccomp.
    "unshare": Case(
        block("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nif libc.unshare(0x10000000) != 0:\n"
              "    raise OSError(ctypes.get_errno(), 'unshare: Operation not permitted')\nprint('root')"),
        (stdio("", "root\n"),), 0.0, ("runtime error",), stderr="Operation not permitted",
    ),
    # ptrace of the runner (which holds the report) and mount: refused by seccomp.
    "ptrace_and_mount": Case(
        block("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
              "bad = [libc.ptrace(16, 2, 0, 0), libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)]\n"
              "print(bad, [ctypes.get_errno()])"),
        (stdio("", "[0, 0] [0]\n"),), 0.0, ("wrong answer",),
    ),
    # 1 GB on stdout: killed at the output cap, never buffered.
    "print_1gb": Case(
        block("import sys\nchunk = 'x' * 2 ** 20\nfor _ in range(1024):\n    sys.stdout.write(chunk)"),
        ADD[:1], 0.0, ("output limit",), "no test passed: output limit",
    ),
    # The same on stderr.
    "stderr_flood": Case(
        block("import sys\nwhile True:\n    sys.stderr.write('x' * 65536)"),
        ADD[:1], 0.0, ("output limit",),
    ),
    # Background processes in sessions of their own, holding stdout open: all killed.
    "background_processes": Case(
        block(f"""
            import os, sys
            for seconds in ({SLEEP_S}, {SLEEP_S + 1}):
                if os.fork() == 0:
                    os.setsid()
                    os.execv(sys.executable, [sys.executable, '-c', f'import time; time.sleep({{seconds}})'])
            print('spawned')
        """),
        ADD[:1], 0.0, ("wrong answer",),
    ),
}


@pytest.fixture(autouse=True)
def secret_in_environment(monkeypatch):
    """The worker's environment holds a secret the code must not see, and an upload holds the answers."""
    monkeypatch.setenv(SECRET_VAR, SECRET)
    UPLOAD.parent.mkdir(exist_ok=True)
    UPLOAD.write_text('{"tests": [{"input": "", "output": "3"}]}\n')
    yield
    UPLOAD.unlink()
    UPLOAD.parent.rmdir()


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_code_accuracy(case: Case):
    before = sandbox_leftovers(uid=None)
    start = time.monotonic()
    reward = code_accuracy(Sample(case.completion, tests=case.tests, domain="code"), timeout_s=TIMEOUT_S)
    elapsed = time.monotonic() - start

    assert elapsed < max(1, len(case.tests)) * TIMEOUT_S + SAFETY_MARGIN_S
    details = reward.details
    assert reward.value == case.score, details
    if case.statuses:
        assert tuple(test["status"] for test in details["tests"]) == case.statuses, details
    if case.reason:
        assert details["reason"].startswith(case.reason), details
    if case.score == 0:
        assert details["reason"]
    if case.stderr:
        expected = case.stderr if isinstance(case.stderr, tuple) else (case.stderr,)
        assert any(fragment in details["tests"][0]["stderr"] for fragment in expected), details
    sandbox = details.get("sandbox", {})
    # bwrap's init may still be exiting (a zombie for the host's init to reap) a moment after we return.
    uid = sandbox.get("uid")
    assert wait_until(lambda: sandbox_leftovers(uid=uid) == before, 2), sandbox_leftovers(uid=uid)
    if sandbox:
        assert sandbox["isolation"] == "bubblewrap"


def sandbox_leftovers(uid) -> dict:
    """Processes of the sandbox uid, our sleeps, our children, files written outside."""
    processes = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        ours = fields["PPid"].strip() == str(os.getpid())
        if (str(SLEEP_S) in cmdline or str(SLEEP_S + 1) in cmdline or ours
                or (uid is not None and fields["Uid"].split()[0] == str(uid))):
            processes.append((pid, cmdline))
    return {"processes": processes, "files": [path for path in OUTSIDE if os.path.lexists(path)]}


@pytest.mark.parametrize(
    "completion, code",
    [
        ("```python\nprint(1)\n```", "print(1)\n"),  # labelled
        ("```\nprint(1)\n```", "print(1)\n"),  # unlabelled
        ("```Python3  \nx\n```", "x\n"),  # tag case and trailing spaces
        ("```py\na\n```\n```python\nb\n```", "b\n"),  # the last block
        ("<answer>```python\na\n```</answer>```python\nb\n```", "a\n"),  # the <answer> span first
        ("```python\na\n```\n```python\nb", "a\n"),  # an unclosed last fence is ignored
        ("```js\nx\n```", None),  # another language
        ("print(1)", None),  # no fence
    ],
)
def test_extract_code(completion, code):
    assert extract_code(completion) == code


def test_samples_scored_at_once_do_not_interfere():
    """Concurrent calls (threads of one worker) each get their own uid and sandbox."""
    fork_bomb = Sample(block("import os\nwhile True:\n    os.fork()"), tests=ADD)
    samples = [Sample(block(RIGHT_ADD), tests=ADD)] * 4 + [fork_bomb] * 2
    with ThreadPoolExecutor(6) as pool:
        rewards = list(pool.map(lambda s: code_accuracy(s, timeout_s=TIMEOUT_S), samples))
    assert [r.value for r in rewards] == [1.0] * 4 + [0.0] * 2
    assert len({r.details["sandbox"]["uid"] for r in rewards}) == 6


def test_killing_the_caller_kills_the_sandbox():
    """A scoring pool kills a stuck worker with its process group: the sandbox, in a session
    of its own, and the code's background processes must go too."""
    code = block(
        "import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n"
        f"    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep({SLEEP_S})'])\n"
        "time.sleep(60)"
    )
    script = (
        "from workers.rewards.base import Sample\nfrom workers.rewards.code import code_accuracy\n"
        f"code_accuracy(Sample({code!r}, tests=({{'input': '', 'output': ''}},)), timeout_s=60)"
    )
    worker = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, start_new_session=True)
    try:
        assert wait_until(lambda: our_sleeps() != [], 10), "the code's background process never started"
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    assert wait_until(lambda: our_sleeps() == [], 2), our_sleeps()


def our_sleeps() -> list:
    return [cmd for _, cmd in sandbox_leftovers(uid=None)["processes"] if str(SLEEP_S) in cmd]


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


SEE_NO_NAMESPACES = """
import os, sys
sys.path.insert(0, "workers/rewards")
import seccomp_filter
seccomp_filter.build().load()  # what Docker's default profile does: no unshare, no clone with namespace flags
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_without_namespaces_the_sandbox_refuses_and_runs_nothing():
    """Where bwrap cannot make its namespaces (Docker's default seccomp, a kernel that forbids
    them), the reward raises naming the cause and the fix: no weaker guard runs the code."""
    script = (
        "from workers.rewards.base import Sample\nfrom workers.rewards.code import code_accuracy\n"
        f"code_accuracy(Sample({block(RIGHT_ADD)!r}, tests=({{'input': '1 2', 'output': '3'}},)))"
    )
    run = subprocess.run(["/usr/bin/python3", "-c", SEE_NO_NAMESPACES, sys.executable, "-c", script], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode != 0
    assert "SandboxUnavailable: The code sandbox cannot start: bwrap:" in run.stderr, run.stderr
    assert "seccomp=deploy/seccomp-bwrap.json" in run.stderr  # the fix


def test_without_bubblewrap_the_sandbox_refuses(monkeypatch):
    monkeypatch.setattr("workers.rewards.sandbox.BWRAP", "/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailable, match="/nonexistent/bwrap is not installed"):
        code_accuracy(Sample(block(RIGHT_ADD), tests=ADD))
