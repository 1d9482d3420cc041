"""The rollout browser, rollout, group, dashboard and evaluation pages in headless Chromium.

The site runs as pytest-django's live server on the test Postgres database (real
full-text search); the data are written through the real bulk path. One screenshot
per page goes to test-artifacts/.
"""

import re

import pytest
from playwright.sync_api import expect

from apps.jobs.models import Job
from apps.training.models import StepMetric
from tests.rollout_factory import add_prompt, add_rollouts, solved

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STEPS, PROMPTS_PER_STEP, GROUP = 20, 2, 4  # 160 rollouts: more than three pages of 50


@pytest.fixture
def grpo_run(dataset):
    job = Job.objects.create(kind="grpo", status="succeeded", label="browser run")
    prompts = [add_prompt(dataset, f"Tom has {i} apples and buys {i + 3} more. How many now?", str(2 * i + 3))
               for i in range(PROMPTS_PER_STEP * STEPS)]
    for step in range(1, STEPS + 1):
        for prompt in prompts[(step - 1) * PROMPTS_PER_STEP: step * PROMPTS_PER_STEP]:
            answer = prompt.reference_answer
            completions = [solved(answer, f"Wait, {answer} apples: re-check the sum. $x = {answer}$"),
                           solved("0"), solved(answer), "<think>" + "no idea " * 10 + "</think>"]
            rewards = [1.5, 0.5, 1.5, 0.0]
            add_rollouts(job, prompt, completions, step=step, total_reward=rewards,
                         advantage=[0.87, -0.87, 0.87, -0.87], is_correct=[True, False, True, False],
                         rewards=[{"math_accuracy": {"value": r // 1, "weight": 1.0, "details": {"extracted": answer}}}
                                  for r in rewards])
        StepMetric.objects.create(job=job, step=step, metrics={"kl": 0.01 * step, "loss": 0.5 - 0.01 * step})
    hostile = add_prompt(dataset, "Say something nasty")
    add_rollouts(job, hostile, ["<script>window.pwned = 1</script><think>fine</think><answer>$\\frac{1}{2}$</answer>"],
                 step=STEPS, sample_index=GROUP, total_reward=0.0)
    return job


def test_filter_search_page_deep_open_a_rollout_its_group_and_the_dashboard(page, grpo_run, artifacts):
    page.goto("/rollouts/")
    rows = page.locator("table.rollouts tbody tr")
    expect(rows).to_have_count(50)
    expect(page.locator("#rollout-count")).to_contain_text("161 rollouts")  # exact: cheap at this size

    page.get_by_label("Correct").select_option("yes")  # htmx: the results swap, the URL follows
    expect(page).to_have_url(re.compile(r"correct=yes"))
    expect(page.locator("#rollout-count")).to_contain_text("80 rollouts")
    page.screenshot(path=artifacts / "rollouts-filtered.png", full_page=True)

    page.get_by_label("Correct").select_option("")
    page.get_by_label("Search").fill("nasty")  # a word of the question only
    expect(rows).to_have_count(1)
    expect(page).to_have_url(re.compile(r"q=nasty"))
    page.screenshot(path=artifacts / "rollouts-search.png", full_page=True)

    page.goto("/rollouts/?sort=reward")
    seen = set()
    for _ in range(3):  # page deep by keyset: every page new rows, rewards never rising
        ids = rows.locator("td:first-child").all_inner_texts()
        assert not seen & set(ids)
        seen |= set(ids)
        page.locator("#next-page").click()
        expect(rows.first.locator("td:first-child")).not_to_have_text(ids[0])  # the swap landed
        expect(page).to_have_url(re.compile(r"after="))
    expect(rows).to_have_count(11)  # 161 = 3 × 50 + 11
    last_page_first_id = rows.first.locator("td:first-child").inner_text()
    page.locator("#previous-page").click()
    expect(rows).to_have_count(50)
    expect(page).to_have_url(re.compile(r"before="))
    page.locator("#next-page").click()
    expect(rows.first.locator("td:first-child")).to_have_text(last_page_first_id)  # back where it was
    page.screenshot(path=artifacts / "rollouts-page-4.png", full_page=True)

    page.goto("/rollouts/?q=nasty")
    rows.first.locator("td:first-child a").click()
    expect(page.get_by_role("heading", name=re.compile(r"Rollout \d+"))).to_be_visible()
    expect(page.locator("pre.raw")).to_contain_text("<script>window.pwned = 1</script>")  # shown as text
    assert page.evaluate("window.pwned") is None  # never run
    expect(page.locator(".katex").first).to_be_visible()  # $\frac{1}{2}$ typeset by the local KaTeX
    page.screenshot(path=artifacts / "rollout-detail.png", full_page=True)

    first_grpo = grpo_run.rollouts.filter(step=1).order_by("pk").first()
    page.goto(f"/rollouts/{first_grpo.pk}/")
    page.get_by_role("link", name="Its group").click()
    expect(page.locator("article.member")).to_have_count(GROUP)
    expect(page.locator("article.member").first).to_contain_text("0.870")
    page.locator("#diff-form select[name=b]").select_option(index=1)
    expect(page.locator("#diff del").first).to_be_visible()
    page.screenshot(path=artifacts / "rollout-group.png", full_page=True)

    page.goto(f"/jobs/{grpo_run.pk}/dashboard")
    expect(page.locator("canvas").first).to_be_visible()
    page.wait_for_function("document.querySelectorAll('canvas').length >= 6")
    page.screenshot(path=artifacts / "run-dashboard.png", full_page=True)
    csv = page.request.get(f"/jobs/{grpo_run.pk}/dashboard.csv")
    assert csv.ok and len(csv.text().strip().splitlines()) == STEPS + 1


def test_a_malformed_filter_in_the_url_shows_a_message(page, grpo_run, artifacts):
    response = page.goto("/rollouts/?reward_min=lots&sort=reward")
    assert response.status == 400
    expect(page.locator(".flash.error")).to_contain_text("Enter a number")
    page.screenshot(path=artifacts / "rollouts-bad-filter.png", full_page=True)
