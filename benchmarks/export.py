"""Export benchmark: a 1M-example dataset version streamed as JSONL over HTTP, against json.dumps in memory.

    python benchmarks/export.py [--examples N] [--skip-baseline] [--compare-readers [--repeat R]]

Fills a scratch Postgres database (postgres://postgres@127.0.0.1:5432/r1bench_export, created and
migrated on first use; kept between runs, refilled when its size differs from --examples) with N
examples shaped like R1 chat rows: a user question and an assistant `<think>…</think>` chain of
thought with a summary, with LaTeX backslashes, newlines, quotes and some non-ASCII, about 1 KB
each (0.5–1.5 KB), with provenance and a prompt. They are frozen twice: version 1 in a shuffled
order (as compose_version mixes its sources), version 2 in the order they were made (as
freeze_all_examples freezes them). Examples are written with INSERT … SELECT from tables of text
variants, so a refill takes a few minutes.

Then, per version and method, it starts the real web server as its own process: gunicorn, one
sync worker, the project's WSGI app, DATABASE_URL at the bench database. A superuser's session is
written into the session table (no test client), and a plain HTTP client (http.client) reads the
response in 1 MiB chunks, counting bytes and lines (there must be N lines, and the first and the
last must be the version's first and last examples). Measured:

- seconds and MB/s of the whole download (request sent to last byte read), and the first byte;
- the gunicorn worker's peak RSS: VmHWM from /proc/<pid>/status after the download (the kernel's
  true peak; a fresh worker per measurement, so one method's peak never shows in another's), RSS
  sampled every 50 ms as a cross-check, and its RSS at rest before the request;
- CPU seconds of the worker, of its Postgres backend (and any parallel workers) and of the client.

Methods:

- "streaming export": the product's `/versions/<pk>/export?format=messages`;
- "json.dumps in memory" (baseline): the same rows loaded into a list, each line made with
  `json.dumps`, the whole body joined in memory and sent as one HttpResponse: the obvious way.
  Its route exists only in `benchmarks/export_baseline_urls.py`, loaded by the baseline's gunicorn
  through `benchmarks/export_baseline_settings.py`; the product never has it.

--compare-readers also times, in this process, the ways of reading the lines out of Postgres
that the export chose between (see `compare_readers`).
"""

import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_db import machine, setup_django

URL = "postgres://postgres@127.0.0.1:5432/r1bench_export"
DATASET = "bench-export"
QUESTION_VARIANTS = 1000
TEXT_VARIANTS = 4096
CHUNK = 1 << 20


def _variants(rng: random.Random) -> tuple[list[str], list[str]]:
    """Questions and assistant texts like R1's: LaTeX, newlines, quotes, a little non-ASCII."""
    words = ["we", "need", "the", "value", "of", "x", "so", "that", "both", "sides", "hold", "first", "compute",
             "then", "simplify", "therefore", "sum", "squares", "is", "equal", "hence", "answer", "consider",
             "case", "where", "n", "even", "odd", "prime", "factor", "divide", "integer", "root", "substitute",
             "back", "verify", "result", "step", "because", "since", "thus", "Wait,", "let", "me", "re-check"]
    math = [r"\frac{a}{b}", r"$x^2 + y^2 = r^2$", r"\sqrt{2}", r"\boxed{42}", r"$\pi \approx 3.14$", r"\cdot",
            "\"exactly\"", "≥", "π", "→", "√", "x_{n+1}", r"\left(\frac{1}{2}\right)^n", "'s"]
    extras = ["所以答案是", "donc", "Schritt", "😀"]

    def sentence() -> str:
        return " ".join(rng.choice(math) if rng.random() < 0.15 else rng.choice(words)
                        for _ in range(rng.randint(6, 18))).capitalize() + "."

    questions = []
    for i in range(QUESTION_VARIANTS):
        text = " ".join(sentence() for _ in range(rng.randint(1, 3)))
        questions.append(f"{text} What is the value of $n$ for problem {i}?")
    texts = []
    for _ in range(TEXT_VARIANTS):
        target = rng.randint(200, 850)
        paragraphs, size = [], 0
        while size < target:
            paragraph = " ".join(sentence() for _ in range(rng.randint(1, 4)))
            if rng.random() < 0.03:
                paragraph += " " + rng.choice(extras)
            paragraphs.append(paragraph)
            size += len(paragraph) + 2
        answer = rng.randint(1, 999)
        texts.append("<think>\n" + "\n\n".join(paragraphs) + "\n</think>\n\n"
                     + f"The answer is $\\boxed{{{answer}}}$.")
    return questions, texts


def fill(n_examples: int) -> None:
    """Write the examples with one INSERT … SELECT over generate_series (text from tables of variants)."""
    from django.db import connection

    from apps.core.bulk import bulk_insert
    from apps.datasets.models import Dataset, Prompt

    with connection.cursor() as c:
        c.execute("TRUNCATE datasets_datasetversionexample, datasets_datasetversion, datasets_example, "
                  "datasets_prompt, datasets_dataset RESTART IDENTITY CASCADE")
    started = time.perf_counter()
    questions, texts = _variants(random.Random(0))
    dataset = Dataset.objects.create(name=DATASET)
    bulk_insert(Prompt, [{"dataset_id": dataset.pk, "question": q, "reference_answer": str(i),
                          "content_hash": f"h{i}"} for i, q in enumerate(questions)])
    first_prompt = Prompt.objects.order_by("pk").values_list("pk", flat=True).first()
    with connection.cursor() as c:
        c.execute("CREATE TEMP TABLE questions (i int PRIMARY KEY, t text)")
        c.executemany("INSERT INTO questions VALUES (%s, %s)", list(enumerate(questions)))
        c.execute("CREATE TEMP TABLE variants (i int PRIMARY KEY, t text)")
        c.executemany("INSERT INTO variants VALUES (%s, %s)", list(enumerate(texts)))
        # The question carries the row number, so every example (and its content hash) is distinct.
        c.execute(
            """
            INSERT INTO datasets_example (dataset_id, messages, prompt_id, source, provenance, content_hash,
                                          created_at)
            SELECT %(dataset)s,
                   jsonb_build_array(jsonb_build_object('role', 'user', 'content', q.t || ' (#' || g || ')'),
                                     jsonb_build_object('role', 'assistant', 'content', v.t)),
                   %(first_prompt)s + g %% %(questions)s,
                   CASE WHEN g %% 5 = 0 THEN 'annotation' ELSE 'rollout' END,
                   CASE WHEN g %% 5 = 0
                        THEN jsonb_build_object('rollout', g, 'job', 1 + g / 100000, 'queue', 3,
                                  'edits', jsonb_build_array(jsonb_build_object(
                                      'by', 'annotator' || g %% 7, 'at', '2026-11-21T10:00:00+00:00',
                                      'verdict', 'edit', 'version', 1)))
                        ELSE jsonb_build_object('rollout', g, 'job', 1 + g / 100000, 'model_version', 2) END,
                   md5(g::text) || md5('r1' || g::text),
                   now()
            FROM generate_series(0, %(n)s - 1) AS g
            JOIN questions q ON q.i = g %% %(questions)s
            JOIN variants v ON v.i = (g::bigint * 7919) %% %(variants)s
            """,
            {"dataset": dataset.pk, "first_prompt": first_prompt, "questions": QUESTION_VARIANTS,
             "variants": TEXT_VARIANTS, "n": n_examples},
        )
    for number in ORDERS:
        _freeze(dataset, number, n_examples)
    with connection.cursor() as c:
        c.execute("VACUUM ANALYZE datasets_example")
    print(f"filled {n_examples:,} examples in {time.perf_counter() - started:.0f} s")


# Version number -> (its name in the table, the order of its examples).
ORDERS = {
    # A composed version (compose_version) mixes its sources in a seeded random order, so reading it
    # in position order visits the examples' rows at random.
    1: ("composed (shuffled order)", "hashint8(id), id"),
    # freeze_all_examples freezes in the order the examples were made: rows are read in table order.
    2: ("frozen in example order", "id"),
}


def _freeze(dataset, number: int, n_examples: int):
    """Version `number` of all the dataset's examples in ORDERS[number]'s order, hashed as freeze_version does."""
    from django.db import connection

    from apps.datasets.models import DatasetVersion

    version = DatasetVersion.objects.create(dataset=dataset, number=number, content_hash="",
                                            example_count=n_examples, note="benchmark",
                                            provenance={"benchmark": "export", "order": ORDERS[number][0]})
    with connection.cursor() as c:
        c.execute(
            f"""
            INSERT INTO datasets_datasetversionexample (version_id, example_id, position)
            SELECT %(version)s, id, row_number() OVER (ORDER BY {ORDERS[number][1]}) - 1
            FROM datasets_example WHERE dataset_id = %(dataset)s
            """,
            {"version": version.pk, "dataset": dataset.pk},
        )
        # sha256 over the content hashes in position order, as freeze_version makes it.
        c.execute(
            """
            SELECT encode(sha256(convert_to(string_agg(e.content_hash, '' ORDER BY ve.position), 'UTF8')), 'hex')
            FROM datasets_datasetversionexample ve JOIN datasets_example e ON e.id = ve.example_id
            WHERE ve.version_id = %s
            """,
            [version.pk],
        )
        digest = c.fetchone()[0]
        c.execute("UPDATE datasets_datasetversion SET content_hash = %s WHERE id = %s", [digest, version.pk])
        c.execute("ANALYZE datasets_datasetversionexample")
    return version


def bench_versions(n_examples: int) -> dict:
    """The versions of ORDERS, filled on first use or when their size differs from `n_examples`."""
    from apps.datasets.models import Dataset, DatasetVersion

    versions = {v.number: v for v in DatasetVersion.objects.filter(dataset__name=DATASET, number__in=ORDERS)}
    if any(v.example_count != n_examples for v in versions.values()) or 1 not in versions:
        fill(n_examples)
        versions = {v.number: v for v in DatasetVersion.objects.filter(dataset__name=DATASET, number__in=ORDERS)}
    for number in ORDERS:
        if number not in versions:
            _freeze(Dataset.objects.get(name=DATASET), number, n_examples)
    return {ORDERS[v.number][0]: v for v in
            DatasetVersion.objects.filter(dataset__name=DATASET, number__in=ORDERS).order_by("number")}


def session_cookie() -> str:
    """A superuser's session, written straight into the session table: the cookie a logged-in browser sends."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore

    user, _ = User.objects.get_or_create(username="bench-export", defaults={"is_superuser": True, "is_staff": True})
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return store.session_key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebServer:
    """gunicorn with one sync worker, in its own process group, on the bench database."""

    def __init__(self, settings_module: str, log: Path):
        self.port = _free_port()
        env = {**os.environ, "DATABASE_URL": URL, "DJANGO_SETTINGS_MODULE": settings_module,
               "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")])}
        with open(log, "wb") as out:  # the server writes to its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "r1studio.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
                 "--workers", "1", "--worker-class", "sync", "--timeout", "900", "--no-control-socket",
                 "--chdir", str(ROOT)],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz", headers={"Host": "localhost"})
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn did not start; see {log}")
            time.sleep(0.2)
        import psutil

        self.worker = psutil.Process(self.proc.pid).children()[0]

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)


def _kb(status: str, field: str) -> int:
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _postgres_backends() -> set[int]:
    from django.db import connection

    with connection.cursor() as c:
        c.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return {row[0] for row in c.fetchall()}


def _parallel_workers_cpu() -> dict[int, float]:
    """CPU seconds of Postgres's parallel workers now running (they exit with their query, so poll)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"parallel worker for PID" in (proc / "cmdline").read_bytes():
                    found[int(proc.name)] = _cpu_seconds(int(proc.name))
            except OSError:
                pass
    return found


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(settings_module: str, path: str, cookie: str, expected_lines: int, expected_ends: tuple[dict, dict],
            log: Path) -> dict:
    """Download `path` from a fresh server; the worker's RSS is sampled every 50 ms and its VmHWM read at the end."""
    server = WebServer(settings_module, log)
    try:
        rest_kb = _kb(Path(f"/proc/{server.worker.pid}/status").read_text(), "VmRSS")
        samples, stop = [], threading.Event()

        parallel_cpu: dict[int, float] = {}  # Postgres's parallel workers for this query: last CPU seen

        def sample():
            polls = 0
            while not stop.is_set():
                samples.append(server.worker.memory_info().rss)
                if polls % 10 == 0:
                    parallel_cpu.update(_parallel_workers_cpu())
                polls += 1
                stop.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        postgres_cpu = {pid: _cpu_seconds(pid) for pid in _postgres_backends()}
        worker_cpu = _cpu_seconds(server.worker.pid)
        client_cpu = time.process_time()
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=900)
        conn.request("GET", path, headers={"Host": "localhost", "Cookie": f"sessionid={cookie}"})
        response = conn.getresponse()
        assert response.status == 200, (response.status, response.read(500))
        first_byte = None
        size = lines = 0
        head, tail = b"", b""
        while chunk := response.read(CHUNK):
            if first_byte is None:
                first_byte = time.perf_counter() - started
                # The worker's connection (opened by the start-up check, or now): its CPU during the download.
                postgres_cpu |= {pid: 0.0 for pid in _postgres_backends() - set(postgres_cpu)}
            size += len(chunk)
            lines += chunk.count(b"\n")
            if len(head) < 1 << 16:
                head += chunk[: 1 << 16]
            tail = (tail + chunk)[-(1 << 16):]
        seconds = time.perf_counter() - started
        client_cpu = time.process_time() - client_cpu
        stop.set()
        sampler.join()
        status = Path(f"/proc/{server.worker.pid}/status").read_text()
        postgres_cpu = sum(_cpu_seconds(pid) - cpu for pid, cpu in postgres_cpu.items()
                           if Path(f"/proc/{pid}").exists())
        postgres_cpu += sum(parallel_cpu.values())
        worker_cpu = _cpu_seconds(server.worker.pid) - worker_cpu
    finally:
        server.stop()
    assert lines == expected_lines, f"{lines:,} lines, expected {expected_lines:,}"
    first, last = json.loads(head.split(b"\n", 1)[0]), json.loads(tail.rstrip(b"\n").rsplit(b"\n", 1)[-1])
    assert (first, last) == expected_ends, "the first or last line is not the version's first or last example"
    return {"bytes": size, "lines": lines, "seconds": seconds, "first_byte": first_byte,
            "peak_kb": _kb(status, "VmHWM"), "sampled_peak_kb": max(samples) // 1024, "rest_kb": rest_kb,
            "worker_cpu": worker_cpu, "postgres_cpu": postgres_cpu, "client_cpu": client_cpu}


def compare_readers(versions: dict, repeat: int) -> None:
    """How the export reads Postgres, against the other ways, in this process (no HTTP): seconds and CPU.

    - server-side cursor: the query's lines, FETCH 2000 at a time, as bytes (no str round trip);
    - COPY, a row per line: CSV with a delimiter and quote that JSON text never holds, so lines go
      out as they are;
    - COPY, batches (the product's `_postgres_lines`): BATCH_LINES lines joined by the server per row.
    """
    from django.db import connection, transaction
    from psycopg.adapt import Loader

    from apps.datasets.export import _line_sql, _postgres_lines

    class TextAsBytes(Loader):
        def load(self, data):
            return bytes(data)

    def line_query(version) -> str:
        return (f"SELECT {_line_sql('messages')} FROM datasets_datasetversionexample ve "
                f"JOIN datasets_example e ON e.id = ve.example_id WHERE ve.version_id = {version.pk} "
                "ORDER BY ve.position")

    def settings(raw):  # what the product sets for its COPY: plans that stream from the first row
        raw.execute("SELECT set_config('enable_sort', 'off', true), set_config('jit', 'off', true)")

    def server_cursor(version):
        with transaction.atomic(), connection.cursor() as cursor:
            named = cursor.cursor.connection.cursor(name="export_compare")
            named.adapters.register_loader("text", TextAsBytes)
            named.execute(line_query(version))
            while rows := named.fetchmany(2000):
                yield b"\n".join([row[0] for row in rows]) + b"\n"
            named.close()

    def copy_per_line(version):
        with transaction.atomic(), connection.cursor() as cursor:
            settings(cursor.cursor)
            sql = f"COPY ({line_query(version)}) TO STDOUT (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02')"
            with cursor.cursor.copy(sql) as copy:
                for row in copy:
                    yield bytes(row)

    readers = {"server-side cursor, FETCH 2000": server_cursor, "COPY, a row per line (CSV)": copy_per_line,
               "COPY, batches of lines (binary; the export)": lambda v: _postgres_lines(v, "messages", "default")}
    with connection.cursor() as c:
        c.execute("SELECT pg_backend_pid()")
        backend = c.fetchone()[0]
        # Parallel workers' CPU would not show in the backend's: one process each, so the CPU compares.
        c.execute("SET max_parallel_workers_per_gather = 0")
    print(f"\nReading the lines in-process (no HTTP), no parallel query, readers interleaved, best of {repeat} "
          f"(CPU: median); load average {os.getloadavg()[0]:.1f} at the start\n")
    print("| version | reader | seconds | MB/s | CPU s: Postgres / Python |")
    print("|---|---|---:|---:|---|")
    for order, version in versions.items():
        runs = {name: [] for name in readers}
        for _ in range(repeat):
            for name, reader in readers.items():
                postgres, python, started = _cpu_seconds(backend), time.process_time(), time.perf_counter()
                size = sum(len(piece) for piece in reader(version))
                runs[name].append((time.perf_counter() - started, _cpu_seconds(backend) - postgres,
                                   time.process_time() - python))
        for name, times in runs.items():
            seconds = min(t[0] for t in times)
            print(f"| {order} | {name} | {seconds:.1f} | {size / 1e6 / seconds:.1f} "
                  f"| {statistics.median(t[1] for t in times):.1f} / {statistics.median(t[2] for t in times):.1f} |")
    with connection.cursor() as c:
        c.execute("RESET max_parallel_workers_per_gather")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1_000_000)
    parser.add_argument("--skip-baseline", action="store_true", help="measure the streaming export only")
    parser.add_argument("--fill-only", action="store_true", help="build the version (if needed) and stop")
    parser.add_argument("--compare-readers", action="store_true",
                        help="also time the ways of reading the lines from Postgres, in-process")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each reader in --compare-readers")
    args = parser.parse_args()
    setup_django(URL)
    from apps.datasets.models import DatasetVersionExample

    versions = bench_versions(args.examples)
    if args.fill_only:
        return
    cookie = session_cookie()
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    load_before = os.getloadavg()
    results = {}
    for order, version in versions.items():
        ends = tuple({"messages": DatasetVersionExample.objects.select_related("example")
                      .get(version=version, position=p).example.messages} for p in (0, args.examples - 1))
        results[order, "streaming export"] = measure(
            "r1studio.settings", f"/versions/{version.pk}/export?format=messages", cookie, args.examples, ends,
            logs / "bench-export-gunicorn.log")
        if not args.skip_baseline:
            results[order, "json.dumps in memory (baseline)"] = measure(
                "export_baseline_settings", f"/bench/versions/{version.pk}/export-in-memory", cookie,
                args.examples, ends, logs / "bench-export-baseline-gunicorn.log")
    load_after = os.getloadavg()

    info = machine()
    size = next(iter(results.values()))["bytes"]
    print(f"\n{args.examples:,} examples, {size / 1e6:,.0f} MB of JSONL · {info['nproc']} × {info['cpu']} · "
          f"{info['postgres'].split(' on ')[0]} (shared_buffers {info['pg_settings']['shared_buffers']}) · "
          f"Python {info['python']}")
    print(f"gunicorn, 1 sync worker, over loopback; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after\n")
    print("| version | method | seconds | first byte, s | MB/s | worker peak RSS (VmHWM), MB | sampled peak, MB "
          "| RSS at rest, MB | CPU s: worker / Postgres / client |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for (order, method), r in results.items():
        print(f"| {order} | {method} | {r['seconds']:.1f} | {r['first_byte']:.2f} "
              f"| {r['bytes'] / 1e6 / r['seconds']:.1f} | {r['peak_kb'] / 1024:.0f} "
              f"| {r['sampled_peak_kb'] / 1024:.0f} | {r['rest_kb'] / 1024:.0f} "
              f"| {r['worker_cpu']:.1f} / {r['postgres_cpu']:.1f} / {r['client_cpu']:.1f} |")
    if not args.skip_baseline:
        print()
        for order in versions:
            ours, base = results[order, "streaming export"], results[order, "json.dumps in memory (baseline)"]
            print(f"{order}: streaming / baseline: {base['seconds'] / ours['seconds']:.1f}× the MB/s, "
                  f"{base['peak_kb'] / ours['peak_kb']:.1f}× less peak RSS")
    if args.compare_readers:
        compare_readers(versions, args.repeat)


if __name__ == "__main__":
    main()
