"""Run model-written code under bubblewrap: an empty root, every namespace new, a seccomp filter.

Threat model. The code is written by a model under RL, so it is untrusted and
possibly adversarial: it may loop, fork-bomb, allocate or print without bound,
open sockets (TCP or Unix) to Postgres or Redis, read secrets or uploaded test
files, or leave processes behind. It runs on a worker that holds database
credentials. It must see nothing of the machine, finish in bounded time and leave
nothing behind.

The isolation is bubblewrap's (Debian package `bubblewrap`), not ours: see
`bwrap_command` for each flag and why it is there. bwrap runs as a random,
otherwise unused uid (when the worker is root) and builds an unprivileged user
namespace, so the code is never root anywhere and RLIMIT_NPROC binds it. Inside,
workers/rewards/sandbox_runner.py forks one child per test under resource limits
and kills every process after each test.

There is no fallback. Where bwrap is missing or cannot create its namespaces,
`SandboxUnavailable` says why and how to fix it, and no model code runs.
"""

import functools
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from workers.rewards.sandbox_runner import memfd

RUNNER = Path(__file__).resolve().parent / "sandbox_runner.py"
SECCOMP_SCRIPT = Path(__file__).resolve().parent / "seccomp_filter.py"
# The interpreter with libseccomp's binding (python3-seccomp), used only to compile the filter.
SECCOMP_PYTHON = os.environ.get("R1_SECCOMP_PYTHON", "/usr/bin/python3")
BWRAP = os.environ.get("R1_BWRAP", "bwrap")
SANDBOX_ROOT_RUNNER = "/sandbox/runner.py"
WORKDIR = "/tmp/work"
TMPFS_BYTES = 64 * 1024 * 1024
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": WORKDIR}
STARTUP_ALLOWANCE_S = 5.0  # on top of the tests' own timeouts, before the caller kills the sandbox
# A uid of our own per sample, above the ids a system hands out, below the 32-bit edge.
SANDBOX_UID_RANGE = (1_000_000, 2_000_000_000)
STDERR_IN_ERROR = 300

FIX = (
    "Install bubblewrap and python3-seccomp (apt-get install bubblewrap python3-seccomp). "
    "The kernel must allow unprivileged user namespaces (sysctl user.max_user_namespaces > 0; "
    "on Ubuntu 24.04 also kernel.apparmor_restrict_unprivileged_userns=0). In Docker, run the "
    "worker with the repo's seccomp profile (security_opt: seccomp=deploy/seccomp-bwrap.json), "
    "as docker-compose.yml does: Docker's default profile refuses the namespaces bwrap needs."
)


class SandboxUnavailable(RuntimeError):
    """No model code can run here: the message names the cause and the fix."""

    def __init__(self, cause: str):
        super().__init__(f"The code sandbox cannot start: {cause}. {FIX}")


def run_in_sandbox(job: dict, timeout_s: float) -> dict:
    """Run sandbox_runner on one job; its report, or {"error": ...}. Kills everything on overrun.

    Raises SandboxUnavailable when bwrap itself cannot start (the code never ran).
    """
    mounts = interpreter_mounts()
    seccomp_fd = memfd("seccomp", seccomp_bpf())  # not CLOEXEC: bwrap reads it
    uid = _sandbox_uid()
    try:
        process = subprocess.Popen(
            bwrap_command(mounts, seccomp_fd),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ENV,
            cwd="/",
            pass_fds=(seccomp_fd,),
            start_new_session=True,  # one killpg reaches bwrap; its --die-with-parent does the rest
            **({"user": uid, "group": uid, "extra_groups": []} if uid is not None else {}),
        )
    except FileNotFoundError:
        raise SandboxUnavailable(f"{BWRAP} is not installed") from None
    finally:
        os.close(seccomp_fd)
    try:
        out, err = process.communicate(json.dumps(job).encode(), timeout=timeout_s + STARTUP_ALLOWANCE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # not reaped yet, so the id cannot have been reused
        process.communicate()
        return {"error": f"the sandbox ran over {timeout_s + STARTUP_ALLOWANCE_S:.0f} s"}
    stderr = err.decode(errors="replace")
    if process.returncode != 0:
        if stderr.startswith("bwrap:"):  # bwrap's own failure, before the code ran
            raise SandboxUnavailable(stderr.strip()[:STDERR_IN_ERROR])
        return {"error": f"runner exit {process.returncode}: {stderr[-STDERR_IN_ERROR:]}"}
    try:
        report = json.loads(out)
        complete = len(report["results"]) == len(job["tests"])
    except (ValueError, KeyError, TypeError):
        complete = False
    if not complete:
        return {"error": "unreadable report"}
    report["sandbox"] = {"uid": uid, "isolation": "bubblewrap", "python": mounts["python"]}
    return report


def bwrap_command(mounts: dict, seccomp_fd: int) -> list[str]:
    command = [
        BWRAP,
        # New user, PID, network, IPC, UTS and cgroup namespaces: no network but a loopback
        # that is down, no view of other processes, no System V IPC shared with the host.
        "--unshare-all",
        "--unshare-user",  # required, not just tried: --disable-userns needs it
        "--disable-userns",  # the code cannot make a user namespace of its own (belt to seccomp's braces)
        "--die-with-parent",  # the worker dies: the sandbox and everything in it die too
        "--new-session",  # no controlling terminal: TIOCSTI cannot type into the worker's terminal
        "--clearenv",  # nothing of the worker's environment (DATABASE_URL, SECRET_KEY, ...)
        *(arg for key, value in ENV.items() for arg in ("--setenv", key, value)),
        "--cap-drop", "ALL",
    ]
    # The root is an empty tmpfs; only the interpreter, its standard library and the
    # shared libraries they load are there, read-only. No /etc, /run, /var, /home, no
    # checkout, data or storage folder, so no socket file and no upload to read.
    for path in mounts["read_only"]:
        command += ["--ro-bind", path, path]
    for path in mounts["hidden"]:
        command += ["--tmpfs", path]
    command += ["--ro-bind", str(RUNNER), SANDBOX_ROOT_RUNNER]
    command += [
        "--dev", "/dev",  # null, zero, random, urandom, tty, pts, shm: nothing else of /dev
        "--proc", "/proc",  # of the new PID namespace: only the sandbox's own processes
        "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp",  # the only writable place, gone with the sandbox
        "--dir", WORKDIR,
        "--chdir", WORKDIR,
        "--seccomp", str(seccomp_fd),  # see workers/rewards/seccomp_filter.py
        # -I: no environment variables, user site or script directory; -S: no site.
        mounts["python"], "-I", "-S", SANDBOX_ROOT_RUNNER,
    ]
    return command


PROBE_LIMITS = {"timeout_s": 1.0, "memory_mb": 256, "output_bytes": 1000, "processes": 4, "file_mb": 1}


@functools.cache  # a success is remembered for the process; a failure is tried again next time
def require_sandbox() -> None:
    """Raise SandboxUnavailable unless a sandbox starts here."""
    report = run_in_sandbox({"code": "", "tests": [], "limits": PROBE_LIMITS}, timeout_s=10)
    if "error" in report:
        raise SandboxUnavailable(report["error"])


@functools.cache
def seccomp_bpf() -> bytes:
    try:
        compiled = subprocess.run(
            [SECCOMP_PYTHON, "-I", str(SECCOMP_SCRIPT)], capture_output=True, timeout=30, env={"PATH": ENV["PATH"]}
        )
    except OSError as error:
        raise SandboxUnavailable(f"cannot run {SECCOMP_PYTHON} to compile the seccomp filter ({error})") from None
    if compiled.returncode != 0 or not compiled.stdout:
        stderr = compiled.stderr.decode(errors="replace")[-STDERR_IN_ERROR:]
        raise SandboxUnavailable(f"compiling the seccomp filter failed: {stderr}")
    return compiled.stdout


@functools.cache
def interpreter_mounts() -> dict:
    """The interpreter the sandbox runs and every path it needs, found once per process.

    The worker's own interpreter when an unprivileged uid can read it; otherwise the
    system's (a pyenv build under /root, mode 0700, is not readable from the sandbox).
    """
    for candidate in (os.path.realpath(sys.executable), os.path.realpath("/usr/bin/python3")):
        if _world_readable(candidate):
            read_only = _needed_paths(candidate)
            return {"python": candidate, "read_only": read_only, "hidden": _installed_packages(read_only)}
    raise SandboxUnavailable(
        f"no Python interpreter readable by an unprivileged user ({sys.executable}, /usr/bin/python3)")


def _world_readable(path: str) -> bool:
    if not os.path.isfile(path) or os.stat(path).st_mode & 0o005 != 0o005:
        return False
    return all(os.stat(parent).st_mode & 0o001 for parent in Path(path).parents)


def _needed_paths(python: str) -> list[str]:
    """The interpreter, its standard library, and the directories of the shared libraries they link."""
    stdlib = subprocess.run(
        [python, "-I", "-S", "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
        capture_output=True, text=True, check=True, env={"PATH": ENV["PATH"]},
    ).stdout.strip()
    dynload = Path(stdlib) / "lib-dynload"
    binaries = [python, *map(str, dynload.glob("*.so"))]
    libraries = set()
    for line in subprocess.run(["ldd", *binaries], capture_output=True, text=True).stdout.splitlines():
        parts = line.split()
        if line.endswith(":"):  # "file:" heads each file's list
            continue
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0] if parts else ""
        if path.startswith("/"):
            libraries.add(path)
    # The loader is found by its literal path; the rest by directory (symlinked names resolve there).
    loaders = {path for path in libraries if "/ld-linux" in path}
    directories = {str(Path(path).parent) for path in libraries - loaders}
    return sorted({python, stdlib, *loaders, *directories})


def _installed_packages(read_only: list[str]) -> list[str]:
    """Installed packages beside the standard library (python:3.11-slim keeps them there): covered by an empty tmpfs."""
    candidates = (os.path.join(path, "site-packages") for path in read_only)
    return [path for path in candidates if os.path.isdir(path)]


def _sandbox_uid() -> int | None:
    """A random uid when we are root (so the code is never root, and RLIMIT_NPROC binds it), else None."""
    if os.geteuid() != 0:
        return None
    return random.SystemRandom().randrange(*SANDBOX_UID_RANGE)
