"""Acceptance test of the embedded demo, driven through headless Chromium.

The issue's acceptance: on a fresh clone, the README's demo command brings the site up
on SQLite with a worker, the demo login works, and a 10k-line JSONL upload runs as a
job with live progress and lands 10,000 prompts.

The demo runs as a subprocess as the README starts it (`r1studio demo`), without the
test suite's DATABASE_URL and CELERY_BROKER_URL (so on SQLite and kombu's filesystem
broker) and in a data folder of its own. The tests talk to it over HTTP only; they never touch a
database themselves.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    # Without these Chromium keeps trying to reach Google, and there is no network here.
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# The README's `bash scripts/demo.sh` sets up .venv, then runs exactly this console script.
DEMO_COMMAND = str(Path(sys.executable).with_name("r1studio"))
DEMO_LOGIN = ("admin", "r1studio-demo")
# Settings the test suite sets for itself (tests/pg_env.py); the demo must run without them.
TEST_ONLY_ENV = ["DATABASE_URL", "CELERY_BROKER_URL", "JOB_HEARTBEAT_SECONDS", "JOB_STALE_SECONDS",
                 "JOB_REAPER_INTERVAL_SECONDS", "DEMO_USERNAME", "DEMO_PASSWORD"]
START_TIMEOUT = 90
JOB_TIMEOUT = 120


# ---- the demo server --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def stop_process_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM lets the demo stop its worker and web server; SIGKILL whatever is left in its group."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`r1studio demo` on a free port, in a fresh data folder; yields its base URL."""
    folder = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if k not in TEST_ONLY_ENV}
    env |= {"R1_DATA_DIR": str(folder / "data"), "PYTHONUNBUFFERED": "1"}
    port = free_port()
    log_path = folder / "demo.log"
    with open(log_path, "wb") as log:
        # A session of its own, so stopping it reaches the worker and gunicorn too.
        # --sft-steps 0, --no-miniature: the tiny model's SFT and GRPO take minutes on 2 cores;
        # the rest is the demo as run.
        proc = subprocess.Popen([DEMO_COMMAND, "demo", "--port", str(port), "--sft-steps", "0", "--no-miniature"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                problem = f"exited with {proc.returncode}" if proc.poll() is not None else "is not up"
                pytest.fail(f"the demo {problem} after {START_TIMEOUT}s; its output:\n{log_path.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        stop_process_group(proc)


# ---- the browser -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def fresh_page(browser, demo):
    """A page in a context of its own: no cookies, not logged in."""
    context = browser.new_context(base_url=demo)
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def page(browser, demo):
    """One logged-in page shared by the tests that work in the site; it records job pages' states."""
    context = browser.new_context(base_url=demo)
    page = context.new_page()
    page.add_init_script(RECORD_JOB_STATUS)
    log_in(page)
    yield page
    context.close()


def log_in(page: Page, username=DEMO_LOGIN[0], password=DEMO_LOGIN[1]) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


# ---- helpers -------------------------------------------------------------------------------


def write_questions(path: Path, n: int) -> Path:
    """n unique arithmetic prompts; `(case i)` makes each question distinct and searchable."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            a, b = i % 97, i % 89
            f.write(json.dumps({"question": f"What is {a} + {b}? (case {i})", "answer": str(a + b)}) + "\n")
    return path


def create_dataset(page: Page, name: str) -> None:
    """Through the "New dataset" form on the dataset list, as a user would."""
    page.goto("/datasets/")
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(f"/datasets/{name}/")


def upload(page: Page, dataset: str, file: Path) -> None:
    """Submit the import form; it redirects to the new job's page."""
    page.goto(f"/datasets/{dataset}/import")
    page.get_by_label("File").set_input_files(file)
    page.get_by_role("button", name="Upload and import").click()
    page.wait_for_url("**/jobs/*/")


def prompt_count(page: Page, dataset: str) -> str:
    """The Prompts column of the dataset list, as rendered (intcomma)."""
    page.goto("/datasets/")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=dataset, exact=True))
    return row.locator('td[data-count="prompts"]').inner_text().strip()


# An init script: it runs before any page script, so it sees every htmx swap of the job status.
RECORD_JOB_STATUS = """
window.jobStates = [];
window.htmxSwaps = 0;
function recordJobState() {
  const status = document.querySelector('#job-status [data-status]');
  const progress = document.querySelector('#job-progress');
  if (!status || !progress) return;
  const state = status.dataset.status + ' ' + progress.textContent.trim();
  if (window.jobStates[window.jobStates.length - 1] !== state) window.jobStates.push(state);
}
document.addEventListener('DOMContentLoaded', recordJobState);
document.addEventListener('htmx:afterSettle', () => { window.htmxSwaps += 1; recordJobState(); });
"""
# Finished once the recorder has seen a final state (after htmx settled the swap, not before).
FINISHED = "/^(succeeded|failed|cancelled) /.test(window.jobStates[window.jobStates.length - 1] || '')"


def watch_job(page: Page) -> dict:
    """Wait, without reloading, until htmx polling shows the job finished; return what was seen."""
    navigations = []

    def on_navigation(frame):
        if frame == page.main_frame:
            navigations.append(frame.url)

    page.on("framenavigated", on_navigation)
    try:
        # Polled from here: wait_for_function evals its predicate in the page, which the CSP forbids.
        deadline = time.monotonic() + JOB_TIMEOUT
        while not page.evaluate(FINISHED):
            assert time.monotonic() < deadline, f"the job page did not show the job finished in {JOB_TIMEOUT} s"
            page.wait_for_timeout(100)
    finally:
        page.remove_listener("framenavigated", on_navigation)
    return {
        "states": page.evaluate("window.jobStates"),
        "swaps": page.evaluate("window.htmxSwaps"),
        "navigations": navigations,
        "status": page.locator("#job-status [data-status]").get_attribute("data-status"),
        "progress": page.locator("#job-progress").inner_text().strip(),
    }


# ---- the tests -----------------------------------------------------------------------------


def test_the_demo_login_works_and_lands_on_the_home_page(fresh_page, artifacts):
    page = fresh_page
    page.goto("/datasets/")
    expect(page).to_have_url("/accounts/login/?next=/datasets/")  # every page needs a login
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()

    log_in(page)

    expect(page).to_have_url("/")
    nav = page.locator("header nav")
    for section in ["Datasets", "Rollouts", "Review", "Jobs", "Models"]:
        expect(nav.get_by_role("link", name=section)).to_be_visible()
    expect(page.locator("header .user")).to_contain_text(DEMO_LOGIN[0])
    page.screenshot(path=artifacts / "demo-home.png", full_page=True)


@pytest.fixture(scope="module")
def imported_10k(page, tmp_path_factory):
    """Upload 10,000 prompts into a new dataset and watch the job page until the job ends."""
    create_dataset(page, "uploaded-10k")
    upload(page, "uploaded-10k", write_questions(tmp_path_factory.mktemp("upload") / "questions.jsonl", 10_000))
    expect(page.locator(".flash")).to_contain_text("queued")
    return watch_job(page)


def test_a_10k_line_jsonl_upload_runs_as_a_job_with_live_progress_and_lands_10000_prompts(
    page, imported_10k, artifacts
):
    seen = imported_10k
    page.screenshot(path=artifacts / "demo-import-job.png", full_page=True)
    assert seen["status"] == "succeeded", seen
    assert seen["progress"] == "10,000 / 10,000", seen
    # Live: the page first showed the job unfinished, and htmx polling (not a reload) brought the end.
    assert seen["states"][0].split()[0] in {"queued", "running"}, seen
    assert seen["states"][-1] == "succeeded 10,000 / 10,000", seen
    assert seen["swaps"] >= 1 and seen["navigations"] == [], seen
    expect(page.locator("#job-status")).to_contain_text("inserted")

    assert prompt_count(page, "uploaded-10k") == "10,000"
    page.goto("/datasets/uploaded-10k/")
    expect(page.locator("#prompt-rows")).to_contain_text("(case 9999)")  # newest first
    page.screenshot(path=artifacts / "demo-dataset.png", full_page=True)


def test_searching_the_prompts_of_a_dataset_narrows_the_list_to_the_one_match(page, imported_10k, artifacts):
    page.goto("/datasets/uploaded-10k/")
    rows = page.locator("#prompt-rows tr")
    expect(rows).not_to_have_count(1)  # a full page of prompts and a "More" row before searching

    page.get_by_placeholder("Search questions").fill("(case 4242)")  # htmx searches as one types

    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("(case 4242)")
    # Pushed into the address bar with only the fields set (the kind and domain filters left out): shareable.
    expect(page).to_have_url(re.compile(r"/datasets/uploaded-10k/\?q=%28case\+4242%29$"))
    page.screenshot(path=artifacts / "demo-search.png", full_page=True)


def test_a_malformed_upload_fails_naming_the_bad_line_and_imports_nothing(page, tmp_path, artifacts):
    create_dataset(page, "malformed-upload")
    file = tmp_path / "malformed.jsonl"
    file.write_text('{"question": "What is 1 + 1?", "answer": "2"}\n'
                    '{"question": "What is 2 + 2?", "answer": "4"}\n'
                    '{"question": "What is 3 + 3?", "answer": \n'  # line 3: cut off, not JSON
                    '{"question": "What is 4 + 4?", "answer": "8"}\n')
    upload(page, "malformed-upload", file)

    seen = watch_job(page)

    page.screenshot(path=artifacts / "demo-import-failed.png", full_page=True)
    assert seen["status"] == "failed", seen
    expect(page.locator("pre.error")).to_contain_text("line 3: not valid JSON")
    expect(page.locator("pre.error")).to_contain_text("nothing was imported")
    assert prompt_count(page, "malformed-upload") == "0"


def test_the_demo_rollouts_browse_and_search_on_sqlite(page, artifacts):
    """The demo samples the tiny model at start; its rollouts are browsable and searchable with LIKE on SQLite."""
    page.goto("/rollouts/")
    rows = page.locator("table.rollouts tbody tr")
    deadline = time.monotonic() + JOB_TIMEOUT
    while rows.locator("td:first-child a").count() == 0:
        assert time.monotonic() < deadline, "the demo's generation job wrote no rollouts"
        time.sleep(2)
        page.reload()

    page.get_by_label("Search").fill("apples doubles")  # words of the synthetic questions, both required
    expect(page).to_have_url(re.compile(r"/rollouts/\?q=apples(\+|%20)doubles$"))  # only the fields set
    expect(rows.locator("td:nth-child(4)").first).to_contain_text("doubles")  # waits for the swap
    for question in rows.locator("td:nth-child(4)").all_inner_texts():
        assert "apples" in question and "doubles" in question
    page.screenshot(path=artifacts / "demo-rollouts-search.png", full_page=True)

    rows.first.locator("td:first-child a").click()
    expect(page).to_have_url(re.compile(r"/rollouts/\d+/$"))  # the rollout's own page, not the list
    page.get_by_role("link", name="Its group").click()
    expect(page.locator("article.member")).to_have_count(4)  # the demo samples 4 per prompt
