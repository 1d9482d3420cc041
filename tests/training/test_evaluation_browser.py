"""The evaluation pages in headless Chromium: what a reader sees agrees with the numbers.

On the compare page every improved prompt's change reads "+" in green and every regressed one "−" in red
(the colour is read back from the rendered page, not from a class name), k/n are shown in A and B, and the
metrics carry 95% intervals; the pass@1 difference is coloured only when its interval excludes 0. The
evaluations list shows pass@1's interval. Screenshots go to test-artifacts/.
"""

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from apps.datasets.models import Dataset, ModelVersion
from tests.training.test_evaluation_page import model, prompt, result, scored

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
Stage = ModelVersion.Stage


def rgb(page, locator) -> tuple[int, int, int]:
    color = locator.evaluate("element => getComputedStyle(element).color")
    return tuple(int(part) for part in re.findall(r"\d+", color)[:3])


def green(color) -> bool:
    red, grn, blue = color
    return grn > red + 40 and grn > blue


def red(color) -> bool:
    rd, grn, blue = color
    return rd > grn + 40 and rd > blue


@pytest.fixture
def evaluations():
    benchmark = Dataset.objects.create(name="gsm-mini")
    cold = model("tiny-cold", Stage.COLD_START)
    rl = model("tiny-rl", Stage.REASONING_RL, cold)
    p = [prompt(benchmark, f"question {i}", str(i)) for i in range(6)]
    a = scored(cold, benchmark, None, per_prompt={
        str(p[0].pk): result(1, 8, False), str(p[1].pk): result(8, 8, True), str(p[2].pk): result(1, 16, True),
        str(p[3].pk): result(3, 8, False), str(p[4].pk): result(6, 8, True), str(p[5].pk): result(5, 8, True)})
    b = scored(rl, benchmark, None, per_prompt={
        str(p[0].pk): result(7, 8, True), str(p[1].pk): result(2, 8, False), str(p[2].pk): result(2, 16, False),
        str(p[3].pk): result(5, 8, True), str(p[4].pk): result(6, 8, True), str(p[5].pk): result(4, 8, False)})
    # Ten prompts where B solves each one to three samples in eight more often: a significant gain.
    weaker = scored(cold, benchmark, [2, 3, 2, 3, 2, 3, 2, 3, 2, 3])
    stronger = scored(rl, benchmark, [5, 4, 4, 5, 3, 6, 4, 5, 4, 5])
    return {"a": a, "b": b, "weaker": weaker, "stronger": stronger}


def compare_url(a, b) -> str:
    return f"{reverse('evaluation_compare')}?a={a.pk}&b={b.pk}"


def test_the_compare_page_colours_and_signs_agree_and_shows_intervals(page, evaluations, artifacts):
    page.goto(compare_url(evaluations["a"], evaluations["b"]))
    improved = page.locator("table.prompt-changes.improved tbody tr")
    regressed = page.locator("table.prompt-changes.regressed tbody tr")
    expect(improved).to_have_count(3)
    expect(regressed).to_have_count(2)
    for row in improved.all():
        change = row.locator("td.change")
        assert change.inner_text().startswith("+") and green(rgb(page, change)), change.inner_text()
    for row in regressed.all():
        change = row.locator("td.change")
        assert change.inner_text().startswith("−") and red(rgb(page, change)), change.inner_text()
    # 1/16 → 2/16 is an improvement of the rate, listed and coloured as one, though its majority vote broke.
    one_in_16 = improved.filter(has_text="1/16 → 2/16")
    expect(one_in_16.locator("td.change")).to_have_text("+0.063")
    expect(one_in_16.locator("td.majority")).to_have_text("✓ → ✗")
    expect(page.locator('[data-majority="broken"]')).to_have_text("3")

    # Intervals for A, B and the difference; a difference within the noise is not coloured.
    pass1 = page.locator('tr[data-metric="pass@1"]')
    expect(pass1.locator(".ci")).to_have_count(3)
    expect(pass1.locator("td").nth(0)).to_contain_text("95% CI")
    difference = pass1.locator("td.difference")
    expect(difference).to_contain_text("not significant")
    assert rgb(page, difference) == rgb(page, pass1.locator("th"))  # the text colour, neither green nor red
    page.screenshot(path=artifacts / "evaluation-compare.png", full_page=True)

    page.goto(compare_url(evaluations["weaker"], evaluations["stronger"]))
    difference = page.locator('tr[data-metric="pass@1"] td.difference')
    expect(difference).to_contain_text("+0.250")
    expect(difference).not_to_contain_text("not significant")
    assert green(rgb(page, difference))
    page.screenshot(path=artifacts / "evaluation-compare-significant.png", full_page=True)
    page.goto(compare_url(evaluations["stronger"], evaluations["weaker"]))
    difference = page.locator('tr[data-metric="pass@1"] td.difference')
    expect(difference).to_contain_text("−0.250")
    assert red(rgb(page, difference))


def test_the_evaluations_list_shows_pass1_with_its_interval(page, evaluations, artifacts):
    page.goto(reverse("evaluation_list"))
    intervals = page.locator("table.evaluations td .ci")
    expect(intervals).to_have_count(2)  # the latest evaluation of each checkpoint
    expect(intervals.first).to_have_text(re.compile(r"^0\.\d{3}–0\.\d{3}$"))
    # tiny-rl's latest (stronger) is significantly better than tiny-cold's latest (weaker) on the same prompts,
    # in pass@1 and in cons@8 (its majority is right on 5 of 10 prompts, tiny-cold's on none).
    best = page.locator("table.evaluations td.best a")
    expect(best).to_have_text(["0.563", "0.500"])
    page.screenshot(path=artifacts / "evaluations-list.png", full_page=True)
