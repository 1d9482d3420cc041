"""The process inside the bubblewrap sandbox that runs untrusted solution code. Standard library only.

workers.rewards.sandbox starts it as `python -I -S /sandbox/runner.py` inside bwrap
(an empty root, new namespaces, a seccomp filter). It reads one JSON job from stdin:

    {"code": "...",
     "tests": [{"stdin": "1 2\\n"} | {"fn": "add", "args": [1, 2], "kwargs": {}}, ...],
     "limits": {"timeout_s": 2.0, "memory_mb": 256, "output_bytes": 1000000,
                "processes": 16, "file_mb": 16}}

and writes one JSON object to stdout: {"results": [...]}, a result per test (see
`run_test`). Expected outputs are never sent here: the caller compares, so code that
inspects or tampers with this process learns nothing about the answers.

It is PID 2 of its own PID namespace (bwrap's init is PID 1). It forks one child per
test, which sets its resource limits and runs the code; afterwards every other process
in the namespace is killed and reaped, so nothing survives a test.
"""

import ctypes
import hashlib
import json
import os
import resource
import selectors
import signal
import sys
import time

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
# RLIMIT_NPROC counts the processes of our uid in this user namespace: bwrap's init and
# this runner are two of them.
OWN_PROCESSES = 2
SETUP_FAILED = 125  # the child's exit code when it could not set its limits; the code never ran
STDOUT_HEAD, STDERR_TAIL = 200, 500  # characters reported for humans
READ_CHUNK = 65536

libc = ctypes.CDLL(None, use_errno=True)


def normalize_output(text: str) -> str:
    """Trailing whitespace of each line and trailing blank lines do not count."""
    return "\n".join(line.rstrip() for line in text.splitlines()).rstrip("\n")


def output_digest(text: str) -> str:
    return hashlib.sha256(normalize_output(text).encode("utf-8", "surrogatepass")).hexdigest()


# ---------------------------------------------------------------- killing and reaping


def kill_everything_else() -> None:
    """SIGKILL every process of the sandbox but this one and bwrap's init (PID 1).

    kill(-1) reaches every process the caller may signal except itself and PID 1; in
    this PID namespace that is exactly the code's processes, also those that left the
    session. A process with SIGKILL pending cannot fork, so a fork bomb cannot outrun it.
    """
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:  # nothing left
        pass


def reap_everything(budget_s: float = 2.0) -> bool:
    """Wait for every descendant (we are a subreaper, so orphans are ours); True when none is left."""
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:  # some still alive: a process forked in the middle of the last kill
            kill_everything_else()
            time.sleep(0.005)
    return False


# ---------------------------------------------------------------- one test


def run_test(job: dict, test: dict) -> dict:
    """Fork a child for one test, watch it under the limits, clean up after it.

    Returns {"status": "ok" | "syntax error" | "runtime error" | "timeout" | "memory limit"
    | "output limit" | "sandbox error", "elapsed", "stdout_sha256", "stdout_head",
    "stderr_tail", "result" (JSON text of the function's return value, or None)}.
    """
    limits = job["limits"]
    stdin = memfd("stdin", test.get("stdin", "").encode("utf-8", "surrogatepass"))
    pipes = {name: os.pipe() for name in ("stdout", "stderr", "result")}
    sys.stdout.flush()
    sys.stderr.flush()
    runner = os.getpid()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(job, test, stdin, {name: w for name, (_, w) in pipes.items()}, runner)
    os.close(stdin)
    for _, w in pipes.values():
        os.close(w)
    readers = {r: name for name, (r, _) in pipes.items()}
    streams, limit_hit = _collect(pid, readers, started + limits["timeout_s"], limits["output_bytes"])
    elapsed = time.monotonic() - started
    _, wait_status = os.waitpid(pid, 0)
    clean = reap_everything()
    stdout = streams["stdout"].decode("utf-8", "replace")
    stderr = streams["stderr"].decode("utf-8", "replace")
    outcome = _last_json_line(streams["result"])
    return {
        "status": limit_hit or _status(outcome, wait_status, stderr),
        "elapsed": round(elapsed, 3),
        "stdout_sha256": output_digest(stdout),
        "stdout_head": stdout[:STDOUT_HEAD],
        "stderr_tail": stderr[-STDERR_TAIL:],
        "result": outcome.get("result"),
        "leftover_processes": not clean,
    }


def memfd(name: str, data: bytes) -> int:
    """An in-memory file holding `data`, positioned at its start, inherited by children (no CLOEXEC)."""
    fd = os.memfd_create(name, 0)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _collect(pid: int, readers: dict, deadline: float, cap: int) -> tuple[dict, str | None]:
    """Read the child's pipes until it exits, a limit is hit, or the deadline passes.

    Then kill everything it left (a background process may hold the pipes open
    forever) and drain what is still in the pipes, under the same cap.
    """
    streams = {name: bytearray() for name in readers.values()}
    selector = selectors.DefaultSelector()
    pidfd = os.pidfd_open(pid)  # readable once the child has exited
    selector.register(pidfd, selectors.EVENT_READ, "exit")
    for fd, name in readers.items():
        selector.register(fd, selectors.EVENT_READ, name)
    ended = _pump(selector, streams, cap, deadline)
    _kill_test(pid)
    limit_hit = None if ended == "exited" else ended  # "timeout" or "output limit"
    if limit_hit is None:
        selector.unregister(pidfd)
        if _pump(selector, streams, cap, time.monotonic() + 1.0) == "output limit":
            limit_hit = "output limit"
    selector.close()
    for fd in (pidfd, *readers):
        os.close(fd)
    return {name: bytes(data) for name, data in streams.items()}, limit_hit


def _pump(selector, streams: dict, cap: int, deadline: float) -> str:
    """Move pipe data into streams: "exited", "eof" (all pipes closed), "timeout" or "output limit"."""
    while len(selector.get_map()) > 0:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout"
        for key, _ in selector.select(remaining):
            if key.data == "exit":
                return "exited"
            chunk = os.read(key.fd, READ_CHUNK)  # ready, so this does not block
            if not chunk:
                selector.unregister(key.fd)
                continue
            streams[key.data] += chunk
            if len(streams[key.data]) > cap:
                return "output limit"
    return "eof"


def _kill_test(pid: int) -> None:
    """Kill the child's session (it called setsid) and every other process of the sandbox."""
    try:
        os.killpg(pid, signal.SIGKILL)  # not reaped yet, so the id cannot have been reused
    except ProcessLookupError:
        pass
    kill_everything_else()


def _last_json_line(data: bytes) -> dict:
    for line in reversed(data.splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def _status(outcome: dict, wait_status: int, stderr: str) -> str:
    if outcome.get("status") in ("ok", "syntax error", "runtime error", "memory limit"):
        return outcome["status"]
    if os.WIFSIGNALED(wait_status) and os.WTERMSIG(wait_status) in (signal.SIGXCPU, signal.SIGKILL):
        return "timeout"  # the CPU-time limit
    if os.WIFEXITED(wait_status) and os.WEXITSTATUS(wait_status) == SETUP_FAILED:
        return "sandbox error"
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
        return "memory limit"
    if os.WIFEXITED(wait_status) and os.WEXITSTATUS(wait_status) == 0:
        return "ok"  # the code left through os._exit(0)
    return "runtime error"


# ---------------------------------------------------------------- inside the child


def _child(job: dict, test: dict, stdin: int, writers: dict, runner: int) -> None:
    """Never returns. Any failure before the code runs exits with SETUP_FAILED."""
    try:
        _confine(job, stdin, writers, runner)
    except BaseException:
        os._exit(SETUP_FAILED)
    status = _execute(job["code"], test)
    os._exit(0 if status == "ok" else 1)


def _confine(job: dict, stdin: int, writers: dict, runner: int) -> None:
    for fd, target in ((stdin, 0), (writers["stdout"], 1), (writers["stderr"], 2), (writers["result"], 3)):
        os.dup2(fd, target)
    os.closerange(4, 1 << 16)  # the runner's own stdout, where the report goes, among them
    os.setsid()
    _set_limits(job["limits"])
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != runner:
        raise OSError("the runner is gone")
    sys.stdin = open(0, encoding="utf-8", errors="replace", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.argv = ["solution.py"]


def _set_limits(limits: dict) -> None:
    cpu = int(limits["timeout_s"]) + 1
    memory = limits["memory_mb"] * 1024 * 1024
    file_size = limits["file_mb"] * 1024 * 1024
    processes = limits["processes"] + OWN_PROCESSES
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    # Counted per uid in the sandbox's own user namespace, so it bounds a fork bomb and
    # nothing else (threads count too).
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))


def _execute(code: str, test: dict) -> str:
    """Run the code for one test; report {"status", "result"} as a JSON line on fd 3."""
    outcome = {"status": "ok", "result": None}
    try:
        compiled = compile(code, "solution.py", "exec")
    except (SyntaxError, ValueError, UnicodeError) as error:  # ValueError: NUL bytes
        outcome["status"] = "syntax error"
        sys.stderr.write(f"{type(error).__name__}: {error}\n")
        return _report(outcome)
    try:
        if "fn" in test:
            namespace = {"__name__": "__solution__"}  # so that an `if __name__ == "__main__":` block does not run
            exec(compiled, namespace)
            value = namespace[test["fn"]](*test.get("args", []), **test.get("kwargs", {}))
            outcome["result"] = json.dumps(value)
        else:
            exec(compiled, {"__name__": "__main__"})
    except SystemExit as leaving:
        if leaving.code not in (None, 0):
            outcome["status"] = "runtime error"
    except MemoryError:
        outcome["status"] = "memory limit"
    except BaseException:
        outcome["status"] = "runtime error"
        try:
            kind, error, trace = sys.exc_info()
            error.with_traceback(trace.tb_next)  # from the solution's frames on
            # The built-in printer: the traceback module may not be importable by the sandbox uid.
            sys.__excepthook__(kind, error, error.__traceback__)
        except BaseException:
            pass
    return _report(outcome)


def _report(outcome: dict) -> str:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    try:
        os.write(3, json.dumps(outcome).encode() + b"\n")
    except BaseException:
        pass
    return outcome["status"]


# ---------------------------------------------------------------- main


def main() -> None:
    if os.getpid() != 2:  # kill(-1) is only safe as PID 2 of bwrap's PID namespace
        sys.exit("sandbox_runner: not inside the sandbox's PID namespace")
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of the code come back to us
    job = json.loads(sys.stdin.buffer.read())
    results = [run_test(job, test) for test in job["tests"]]
    sys.stdout.write(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
