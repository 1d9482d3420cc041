"""The token lens in headless Chromium: a rollout drawn token by token, shaded by entropy or log-probability,
hostile tokens shown as text; a group aligned at its first divergent token; the browser's entropy filter and
sort. One screenshot per page goes to test-artifacts/."""

import re

import pytest
from playwright.sync_api import expect

from apps.jobs.models import Job
from tests.rollout_factory import add_prompt, add_rollouts
from workers.tokens import TokenTrace

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# A byte-level BPE spelling would be 'Ġ' for a space and 'Ċ' for a newline: stored as the bytes they stand for.
SHARED = [b"<think>", b"Tom", b" has", b" 3", b" apples", b" and", b" buys", b" 4", b" more", b".\n"]
ENDINGS = [
    [b" So", b" 3", b" +", b" 4", b" =", b" 7", b"</think>", b"<answer>", b"7", b"</answer>"],
    [b" Wait", b",", b" <script>", b"window.pwned = 1", b"</script>", b" \xe4", b"\xb8\x80", b"</think>"],
    [b" So", b" 3", b" +", b" 4", b" =", b" 8", b"</think>", b"<answer>", b"8", b"</answer>"],
]


def trace(pieces: list[bytes], unsure_at: int, vocabulary: dict) -> TokenTrace:
    """`pieces` as a trace over one `vocabulary` shared by the group, as a model's token ids are."""
    ids = [vocabulary.setdefault(p, len(vocabulary)) for p in pieces]
    entropy = [0.05 + 0.02 * (i % 3) for i in range(len(ids))]
    logprobs = [-0.02] * len(ids)
    entropy[unsure_at], logprobs[unsure_at] = 2.8, -4.5
    alternative = vocabulary.setdefault(b" 9", len(vocabulary))
    top_ids = [[t, alternative] for t in ids]
    top_logprobs = [[lp, lp - 1.0] for lp in logprobs]
    return TokenTrace(ids=ids, logprobs=logprobs, entropy=entropy, top_ids=top_ids, top_logprobs=top_logprobs,
                      pieces={i: p for p, i in vocabulary.items()}, entropy_kind="sampling")


@pytest.fixture
def group(dataset):
    job = Job.objects.create(kind="generate", status="succeeded", label="lens run")
    prompt = add_prompt(dataset, "Tom has 3 apples and buys 4 more. How many now?", "7")
    pieces = [SHARED + ending for ending in ENDINGS]
    completions = [b"".join(p).decode("utf-8", "replace") for p in pieces]
    vocabulary = {}
    rollouts = add_rollouts(job, prompt, completions, tokens=[trace(p, len(SHARED) + 5, vocabulary) for p in pieces],
                            total_reward=[1.0, 0.0, 0.0], is_correct=[True, False, False])
    plain = add_prompt(dataset, "What is 1 + 1?", "2")
    add_rollouts(job, plain, ["<think>no trace</think><answer>2</answer>"])
    return job, rollouts


def background(locator) -> str:
    return locator.evaluate("element => getComputedStyle(element).backgroundColor")


def test_the_rollout_page_draws_tokens_shaded_with_hostile_ones_as_text(page, group, artifacts):
    _, (right, hostile, _) = group
    page.goto(f"/rollouts/{hostile.pk}/")
    tokens = page.locator("#tokens .t")
    expect(tokens).to_have_count(len(SHARED) + len(ENDINGS[1]))
    expect(page.locator("#tokens script")).to_have_count(0)
    assert page.evaluate("window.pwned") is None  # the token's text was never run
    script_token = tokens.nth(len(SHARED) + 2)
    expect(script_token).to_have_text(" <script>")
    script_token.hover()  # static/js/tokens.js gives the token its title from the page's JSON
    expect(script_token).to_have_attribute("title", re.compile(
        rf"^#{len(SHARED) + 2} ␣<script>  log-prob -0\.020 \(p 0\.980\)\n"
        r"entropy 0\.050\ntop: ␣<script> -0\.02, ␣9 -1\.02$"))
    expect(tokens.nth(len(SHARED) + 5)).to_have_text(" \\xe4")  # half a character: its byte, not a �
    expect(tokens.nth(len(SHARED) - 1)).to_have_text(".↵\n")  # the newline shown, and kept as a line break

    unsure = tokens.nth(len(SHARED) + 5)  # entropy 2.8, log-prob -4.5
    calm = tokens.nth(0)
    by_entropy = background(unsure)
    assert by_entropy != "rgba(0, 0, 0, 0)" and background(calm) != by_entropy
    page.get_by_label("log-probability").check()  # CSS alone switches the shades
    by_logprob = background(unsure)
    assert by_logprob not in ("rgba(0, 0, 0, 0)", by_entropy)
    page.screenshot(path=artifacts / "rollout-token-lens.png", full_page=True)

    first_unsure = page.locator("table.unsure tbody tr").first
    expect(first_unsure).to_contain_text("2.801")  # 2.8 as float16 keeps it
    expect(first_unsure.locator("td.context")).to_contain_text("Wait,")
    first_unsure.locator("a").click()
    expect(page).to_have_url(re.compile(rf"#t{len(SHARED) + 5}$"))


def test_a_rollout_without_token_data_has_no_lens(page, group):
    job, _ = group
    plain = job.rollouts.get(completion__contains="no trace")
    page.goto(f"/rollouts/{plain.pk}/")
    expect(page.locator("h1")).to_have_text(f"Rollout {plain.pk}")
    expect(page.locator("#token-lens")).to_have_count(0)


def test_the_group_is_aligned_at_the_first_token_where_the_samples_part(page, group, artifacts):
    _, (right, _, _) = group
    page.goto(f"/rollouts/{right.pk}/group")
    expect(page.locator(".member .tokens")).to_have_count(3)
    forks = page.locator(".member .tokens .t.fork")
    expect(forks).to_have_count(3)
    expect(forks.nth(0)).to_have_text(" So")  # the first token after SHARED: "So" twice and "Wait" once
    expect(forks.nth(1)).to_have_text(" Wait")
    expect(page.locator("#alignment")).to_contain_text(f"aligned at token {len(SHARED)}")
    # Each column starts 8 tokens before the fork; the 2 shared tokens before that are folded away once.
    expect(page.locator("details.shared-prefix summary")).to_contain_text("The 2 tokens before the columns")
    expect(page.locator("details.shared-prefix .t")).to_have_count(2)
    expect(page.locator(".member").first.locator(".tokens .t").first).to_have_text(" has")
    page.screenshot(path=artifacts / "rollout-group-aligned.png", full_page=True)


def test_the_browser_filters_and_sorts_by_max_entropy(page, group, artifacts):
    job, _ = group
    page.goto(f"/rollouts/?job={job.pk}")
    rows = page.locator("table.rollouts tbody tr")
    expect(rows).to_have_count(4)
    page.get_by_label("Max token entropy ≥").fill("2.5")
    page.get_by_label("Max token entropy ≥").press("Enter")
    expect(page).to_have_url(re.compile(r"entropy_min=2.5"))
    expect(rows).to_have_count(3)  # the rollout without a trace is gone
    page.get_by_label("Sort").select_option("max_entropy")
    expect(page.locator("table.rollouts th").last).to_have_text("Max entropy")
    expect(page.locator("td.token-value").first).to_have_text("2.801")
    page.screenshot(path=artifacts / "rollouts-entropy-filter.png", full_page=True)
    page.get_by_label("Max token entropy ≥").fill("3")
    page.get_by_label("Max token entropy ≥").press("Enter")
    expect(page.locator("table.rollouts tbody td.muted")).to_have_text("No rollouts match these filters.")
