import re
import time

import pytest
from django.urls import reverse

from apps.curation.models import Annotation, ReviewItem, ReviewQueue
from apps.datasets.models import ModelVersion
from apps.jobs.models import Job
from apps.rollouts.groups import word_diff
from apps.rollouts.rendering import SHOWN_CHARS, render_markdown
from tests.rollout_factory import add_prompt, add_rollouts, solved

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(db):
    return Job.objects.create(kind="generate", status="succeeded")


@pytest.fixture
def prompt(dataset):
    return add_prompt(dataset, "What is $48 + 24$?")


def page(client, name, rollout):
    response = client.get(reverse(name, args=[rollout.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_rollout_page_shows_prompt_reasoning_answer_and_each_rewards_details(admin_client, job, prompt):
    rewards = {"math_accuracy": {"value": 0.0, "weight": 1.0,
                                 "details": {"extracted": "71", "reference": "72", "reason": "not equivalent"}},
               "format": {"value": 1.0, "weight": 0.5, "details": {}}}
    [rollout] = add_rollouts(job, prompt, [solved("$\\boxed{71}$", "So \\(48 + 24 = 71\\), wait.")],
                             total_reward=0.5, rewards=rewards, completion_tokens=31, finish_reason="stop")
    html = page(admin_client, "rollout_detail", rollout)
    assert '<span class="math inline">\\boxed{71}</span>' in html  # left for KaTeX, not mangled by Markdown
    assert '<span class="math inline">48 + 24 = 71</span>' in html
    assert "/static/vendor/katex/katex.min.js" in html and "https://" not in html
    for shown in ("math_accuracy", "not equivalent", "extracted", "31 completion", "stop", "reflection words"):
        assert shown in html
    assert reverse("rollout_group", args=[rollout.pk]) in html
    assert f"?prompt={prompt.pk}" in html


@pytest.mark.parametrize("hostile", [
    "<script>alert('x')</script>",
    '<img src=x onerror="alert(1)">',
    "[click](javascript:alert(1))",
    '<a href="javascript:alert(1)">x</a>',
    "<iframe src='https://evil'></iframe>",
    "![tracker](https://evil.example/pixel.png)",
    "<style>body{display:none}</style>",
])
def test_hostile_model_output_renders_as_text(admin_client, job, prompt, hostile):
    [rollout] = add_rollouts(job, prompt, [f"<think>{hostile}</think><answer>{hostile}</answer>"])
    html = page(admin_client, "rollout_detail", rollout)
    body = html[html.index("<main>"):]
    # Whatever is left of the hostile text is escaped text, never a tag or an attribute.
    assert not re.search(r"<(script|img|iframe|style)\b", body.replace('<script src="/static/', ""))
    assert not re.search(r"<[a-z][^<>]*(onerror|javascript:)", body)


def test_broken_markdown_and_latex_do_not_break_the_page(admin_client, job, prompt):
    broken = "**unclosed *emph `code \\( x^{ \\frac{1}{ $$ \\begin{matrix} | a | b\n|---\n" + "[" * 5000
    [rollout] = add_rollouts(job, prompt, [broken])
    html = page(admin_client, "rollout_detail", rollout)
    assert "Same prompt, other checkpoints" in html  # the page rendered to the end


def test_five_megabytes_and_ten_thousand_lines_render_cut_with_the_full_text_a_click_away(admin_client, job, prompt):
    huge, many_lines = "<think>" + "step " * 1_000_000 + "</think><answer>1</answer>", "line\n" * 10_000
    rollouts = add_rollouts(job, prompt, [huge, many_lines])
    for rollout, text in zip(rollouts, (huge, many_lines)):
        started = time.perf_counter()
        html = page(admin_client, "rollout_detail", rollout)
        assert time.perf_counter() - started < 5  # a guard against a hang, not a speed claim
        assert len(html) < 200_000 and "See it all as plain text" in html
        raw = admin_client.get(reverse("rollout_raw", args=[rollout.pk]))
        assert raw["Content-Type"] == "text/plain; charset=utf-8" and raw["X-Content-Type-Options"] == "nosniff"
        assert raw.content.decode() == text
    assert admin_client.get(reverse("rollout_raw", args=[rollouts[0].pk]), {"field": "job_id"}).status_code == 400


def test_render_cuts_before_parsing():
    shown = render_markdown("a" * (SHOWN_CHARS * 3))
    assert shown.truncated and shown.total_chars == SHOWN_CHARS * 3
    assert len(shown.html) < SHOWN_CHARS + 100


def test_other_checkpoints_and_annotations_are_linked(admin_client, job, prompt, users):
    base = ModelVersion.objects.create(name="base", uri="/m/base")
    later = ModelVersion.objects.create(name="step-200", uri="/m/200", parent=base)
    [mine] = add_rollouts(job, prompt, [solved()], model_version_id=base.pk)
    [theirs] = add_rollouts(Job.objects.create(kind="generate"), prompt, [solved("71")], model_version_id=later.pk)
    queue = ReviewQueue.objects.create(name="cold-start")
    item = ReviewItem.objects.create(queue=queue, rollout=mine, position=1)
    Annotation.objects.create(item=item, annotator=users["annotator"], verdict="edit", readability=2, notes="rambles")
    html = page(admin_client, "rollout_detail", mine)
    assert reverse("rollout_detail", args=[theirs.pk]) in html and "step-200" in html
    assert "cold-start" in html and "rambles" in html and "annotator" in html


def test_the_group_view_shows_each_sample_with_reward_and_advantage(admin_client, job, prompt):
    members = add_rollouts(job, prompt, [solved(), solved("71"), solved("70"), solved()],
                           total_reward=[1.0, 0.0, 0.0, 1.0], is_correct=[True, False, False, True])
    html = page(admin_client, "rollout_group", members[1])
    for member in members:
        assert reverse("rollout_detail", args=[member.pk]) in html
    # No stored advantage (a generation job): the group-relative one, (r − 0.5) / 0.5, marked as computed.
    assert html.count(">1.000</b>*") == 2 and html.count(">-1.000</b>*") == 2
    grpo = Job.objects.create(kind="grpo")
    stored = add_rollouts(grpo, prompt, [solved(), solved("1")], step=3, total_reward=[1.0, 0.0],
                          advantage=[0.7071, -0.7071])
    html = page(admin_client, "rollout_group", stored[0])
    assert ">0.707</b>" in html and "</b>*" not in html
    assert html.count('class="member') == 2  # another step's rollouts stay out


def test_the_diff_of_two_rollouts(admin_client, job, prompt):
    a, b = add_rollouts(job, prompt, [solved("72", "48 + 24 = 72"), solved("71", "48 + 23 = 71")])
    response = admin_client.get(reverse("rollout_diff"), {"a": a.pk, "b": b.pk}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "<del>24 </del><ins>23 </ins>= <del>72</del><ins>71</ins>" in html
    assert "<html" not in html
    c, d = add_rollouts(job, prompt, ["<script>alert(1)</script>", "<b>bold</b>"])
    hostile = admin_client.get(reverse("rollout_diff"), {"a": c.pk, "b": d.pk}).content.decode()
    assert "&lt;/<del>script</del><ins>b</ins>&gt;" in hostile and "<script>alert" not in hostile
    assert admin_client.get(reverse("rollout_diff"), {"a": a.pk, "b": "x"}).status_code == 400
    assert admin_client.get(reverse("rollout_diff"), {"a": a.pk, "b": 10**9}).status_code == 404


def test_word_diff_of_huge_texts_is_bounded():
    diff = word_diff("a b " * 100_000, "b a " * 100_000)
    assert diff.truncated and diff.pieces


def test_word_diff_shows_changed_phrases_even_deep_in_a_long_text():
    def shown(diff):
        return [(p.op, p.text) for p in diff.pieces if p.op != "same"]

    assert shown(word_diff("the cat sat on the mat.", "a dog sat on a rug.")) == [
        ("removed", "the cat "), ("added", "a dog "), ("removed", "the mat"), ("added", "a rug")]
    steps = "".join(f"Step {i}: add {i} and {i + 1} to get {2 * i + 1}. " for i in range(2_000))  # one long line
    changed = steps.replace("to get 2001.", "to get 2002.")
    assert shown(word_diff(steps, changed)) == [("removed", "2001"), ("added", "2002")]
