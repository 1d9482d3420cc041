import re
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from apps.datasets.models import Dataset, ModelVersion, Prompt
from apps.jobs.models import Job
from apps.training.comparison import lineage_order, number, signed
from apps.training.models import Evaluation

pytestmark = pytest.mark.django_db
Stage = ModelVersion.Stage


def model(name, stage, parent=None, step=None):
    return ModelVersion.objects.create(name=name, uri=f"/models/{name}", stage=stage, parent=parent, step=step)


def evaluate(version, benchmark, metrics, per_prompt=None, k=8, temperature=0.6, top_p=0.95):
    """An evaluation as the evaluate job stores it, with its own succeeded job."""
    job = Job.objects.create(kind="evaluate", status="succeeded",
                             params={"model_version": version.pk, "dataset": benchmark.pk, "n": k})
    return Evaluation.objects.create(model_version=version, dataset=benchmark, job=job, k=k, temperature=temperature,
                                     top_p=top_p, metrics=metrics, per_prompt=per_prompt or {})


def prompt(benchmark, question, answer):
    return Prompt.objects.create(dataset=benchmark, question=question, reference_answer=answer,
                                 content_hash=Prompt.hash_for(question, answer, []))


def result(correct, n, majority_correct):
    return {"correct": correct, "n": n, "majority_correct": majority_correct, "majority_votes": 3}


@pytest.fixture
def lineage(db):
    """Created out of lineage order on purpose: base, cold, other-base, rl (from cold), zero (from base)."""
    base = model("tiny-base", Stage.BASE)
    cold = model("tiny-cold", Stage.COLD_START, base, step=20)
    other = model("other-base", Stage.BASE)
    rl = model("tiny-rl", Stage.REASONING_RL, cold, step=50)
    zero = model("tiny-zero", Stage.R1_ZERO, base, step=10)
    return {"base": base, "cold": cold, "other": other, "rl": rl, "zero": zero}


def results(corrects, n=8, majority=None) -> dict:
    """Per-prompt results for prompts "1".."m": corrects[i] of n right; the majority answer right where given."""
    majority = majority if majority is not None else [c * 2 > n for c in corrects]
    return {str(i + 1): result(c, n, m) for i, (c, m) in enumerate(zip(corrects, majority, strict=True))}


def scored(version, benchmark, corrects, n=8, majority=None, per_prompt=None, **kwargs):
    """An evaluation whose metrics are what the evaluate job computes from its per-prompt results."""
    per_prompt = per_prompt or results(corrects, n, majority)
    rates = [r["correct"] / r["n"] for r in per_prompt.values()]
    metrics = {"prompts": len(per_prompt), "pass@1": sum(rates) / len(rates),
               f"cons@{n}": sum(r["majority_correct"] for r in per_prompt.values()) / len(per_prompt)}
    return evaluate(version, benchmark, metrics, per_prompt, k=n, **kwargs)


@pytest.fixture
def scores(lineage, dataset):
    """gsm-mini (10 prompts, k=8) for four checkpoints, tiny-cold twice; math-mini (2 prompts, k=4) for two.

    On gsm-mini tiny-rl solves every prompt 2 samples in 8 more often than tiny-cold, the next best: a
    significant pass@1. Its cons@8 (0.9) beats tiny-cold's (0.6) on 3 prompts of 10: within the noise.
    On math-mini, two prompts are too few for any difference to be significant.
    """
    math = Dataset.objects.create(name="math-mini")
    m = lineage
    gsm = {
        "base": scored(m["base"], dataset, [1] * 10, majority=[False] * 10),
        "cold_old": scored(m["cold"], dataset, [7] * 10, majority=[True] * 10),
        "cold": scored(m["cold"], dataset, [3] * 5 + [4] * 5, majority=[True] * 6 + [False] * 4),
        "rl": scored(m["rl"], dataset, [5] * 5 + [6] * 5, majority=[True] * 9 + [False]),
        "zero": scored(m["zero"], dataset, [2] * 5 + [3] * 5, majority=[True] * 2 + [False] * 8),
    }
    return gsm | {
        "rl_math": scored(m["rl"], math, [0, 1], n=4, majority=[False, True], temperature=1.0),
        "zero_math": scored(m["zero"], math, [1, 1], n=4, majority=[False, False], temperature=1.0),
    }


def cell_values(table):
    return {row.model.name: [(c.pass1, c.cons) if c else None for c in row.cells] for row in table.rows}


def best_cells(table):
    """(checkpoint, benchmark, metric) of every highlighted cell."""
    marked = set()
    for row in table.rows:
        for benchmark, cell in zip(table.benchmarks, row.cells):
            for metric in ("pass1", "cons"):
                if cell and getattr(cell, f"best_{metric}"):
                    marked.add((row.model.name, benchmark.dataset.name, metric))
    return marked


def test_the_table_has_one_row_per_evaluated_checkpoint_in_lineage_order(admin_client, scores):
    response = admin_client.get(reverse("evaluation_list"))
    assert response.status_code == 200
    table = response.context["table"]
    # Depth first from the base: cold and its RL child come before zero, created later; other-base has no evaluation.
    assert [(row.model.name, row.depth) for row in table.rows] == [
        ("tiny-base", 0), ("tiny-cold", 1), ("tiny-rl", 2), ("tiny-zero", 1)]
    assert [b.dataset.name for b in table.benchmarks] == ["gsm-mini", "math-mini"]
    assert [(b.cons_name, b.settings) for b in table.benchmarks] == [
        ("cons@8", "k=8, temperature 0.6, top-p 0.95"), ("cons@4", "k=4, temperature 1, top-p 0.95")]
    # tiny-cold shows its latest evaluation (0.4375), not the older 0.875.
    assert cell_values(table) == {
        "tiny-base": [(0.125, 0.0), None],
        "tiny-cold": [(0.4375, 0.6), None],
        "tiny-rl": [(0.6875, 0.9), (0.125, 0.5)],
        "tiny-zero": [(0.3125, 0.2), (0.25, 0.0)],
    }
    assert table.rows[1].cells[0].runs == 2 and table.rows[1].cells[0].evaluation == scores["cold"]
    html = response.content.decode()
    assert "latest of 2" in html and html.count("latest of") == 1
    assert "0.875" not in html and "other-base" not in html


def test_a_best_value_is_highlighted_only_where_it_is_significantly_better_than_every_other(admin_client, scores):
    response = admin_client.get(reverse("evaluation_list"))
    # gsm-mini pass@1: tiny-rl, significantly. Its cons@8, the best by 0.3, and everything on math-mini: noise.
    assert best_cells(response.context["table"]) == {("tiny-rl", "gsm-mini", "pass1")}
    html = response.content.decode()
    assert html.count('class="num best"') == 1
    rl_gsm_job = reverse("job_detail", args=[scores["rl"].job_id])
    assert re.search(rf'<td class="num best"[^>]*>\s*<a href="{rl_gsm_job}">0\.688</a>', html)
    # Every cell links to its evaluation job; the superseded evaluation's job is not linked.
    for name in ["base", "cold", "rl", "zero", "rl_math", "zero_math"]:
        assert f'href="{reverse("job_detail", args=[scores[name].job_id])}"' in html
    assert f'href="{reverse("job_detail", args=[scores["cold_old"].job_id])}"' not in html


def test_the_list_shows_pass1_with_its_interval_over_prompts(admin_client, scores):
    response = admin_client.get(reverse("evaluation_list"))
    rl = response.context["table"].rows[2].cells[0]
    # 10 prompts at 5/8 and 6/8: mean 0.6875, sd 0.0659, t(9) = 2.262 → ± 0.0471.
    assert (rl.pass1_interval.low, rl.pass1_interval.high) == (pytest.approx(0.64037, abs=1e-5),
                                                               pytest.approx(0.73463, abs=1e-5))
    assert '<span class="ci muted" title="95% interval over 10 prompts">0.640–0.735</span>' in (
        response.content.decode())
    base = response.context["table"].rows[0].cells[0]
    assert (base.pass1_interval.low, base.pass1_interval.high) == (0.125, 0.125)  # every prompt 1/8: no spread


def test_a_column_with_a_single_value_or_no_per_prompt_results_has_nothing_highlighted(admin_client, lineage,
                                                                                         dataset):
    evaluate(lineage["base"], dataset, {"pass@1": 0.5, "cons@8": 0.5})
    response = admin_client.get(reverse("evaluation_list"))
    assert best_cells(response.context["table"]) == set()
    evaluate(lineage["cold"], dataset, {"pass@1": 0.9, "cons@8": 0.9})  # better, but nothing to test it on
    response = admin_client.get(reverse("evaluation_list"))
    assert best_cells(response.context["table"]) == set()
    assert "num best" not in response.content.decode() and 'class="ci' not in response.content.decode()


def test_the_dataset_filter_keeps_one_benchmark(admin_client, scores):
    response = admin_client.get(reverse("evaluation_list"), {"dataset": "math-mini"})
    table = response.context["table"]
    assert [b.dataset.name for b in table.benchmarks] == ["math-mini"]
    assert [row.model.name for row in table.rows] == ["tiny-rl", "tiny-zero"]
    assert table.all_benchmarks == ["gsm-mini", "math-mini"]  # the filter still offers both
    assert '<option value="math-mini" selected>' in response.content.decode()
    missing = admin_client.get(reverse("evaluation_list"), {"dataset": "nope"})
    assert missing.status_code == 200 and "No evaluations on benchmark “nope”" in missing.content.decode()


def test_the_compare_form_offers_every_evaluation_and_starts_on_the_two_newest(admin_client, scores):
    response = admin_client.get(reverse("evaluation_list"))
    html = response.content.decode()
    assert f'action="{reverse("evaluation_compare")}"' in html
    assert '<select name="a">' in html and '<select name="b">' in html
    for evaluation in scores.values():
        assert html.count(f'<option value="{evaluation.pk}"') == 2  # once in A, once in B
    # gsm-mini comes first; its two newest are tiny-zero (B) and tiny-rl (A).
    table = response.context["table"]
    assert (table.default_a, table.default_b) == (scores["rl"].pk, scores["zero"].pk)
    assert html.count(" selected>") == 2


def test_the_nav_links_to_the_evaluations_page(admin_client, scores):
    html = admin_client.get(reverse("evaluation_list")).content.decode()
    assert f'<a href="{reverse("evaluation_list")}" class="active">Evaluations</a>' in html
    other = admin_client.get(reverse("model_list")).content.decode()
    assert f'<a href="{reverse("evaluation_list")}" >Evaluations</a>' in other


@pytest.fixture
def pair(lineage, dataset):
    """A (tiny-cold) and B (tiny-rl) on gsm-mini with known per-prompt results."""
    long_question = "How many apples? " + "x" * 300
    p = [prompt(dataset, long_question, "42")] + [prompt(dataset, f"question {i}", str(i)) for i in range(1, 8)]
    per_a = {
        str(p[0].pk): result(1, 8, False),  # improved +0.75, fixed by vote
        str(p[1].pk): result(3, 8, False),  # improved +0.25, fixed
        str(p[2].pk): result(8, 8, True),  # regressed -0.75, broken
        str(p[3].pk): result(6, 8, True),  # unchanged, both right
        str(p[4].pk): result(0, 8, False),  # improved +0.125, both wrong
        str(p[5].pk): result(4, 8, True),  # only in A
        # 1/16 → 2/16: solved more often, yet the vote turns wrong (a wrong answer repeated in B): improved by
        # rate, broken by vote. It must never be listed under a heading that contradicts its + sign.
        str(p[7].pk): result(1, 16, True),
    }
    per_b = {
        str(p[0].pk): result(7, 8, True),
        str(p[1].pk): result(5, 8, True),
        str(p[2].pk): result(2, 8, False),
        str(p[3].pk): result(6, 8, True),
        str(p[4].pk): result(1, 8, False),
        str(p[6].pk): result(8, 8, True),  # only in B
        str(p[7].pk): result(2, 16, False),
    }
    return (scored(lineage["cold"], dataset, None, per_prompt=per_a),
            scored(lineage["rl"], dataset, None, per_prompt=per_b), p)


def compare(client, a, b):
    return client.get(reverse("evaluation_compare"), {"a": a, "b": b})


def table_of(html: str, key: str) -> str:
    start = html.index(f'class="prompt-changes {key}"')
    return html[start:html.index("</table>", start)]


def test_compare_lists_prompts_by_their_change_and_counts_the_majority_vote_apart(admin_client, pair):
    a, b, p = pair
    response = compare(admin_client, a.pk, b.pk)
    assert response.status_code == 200
    prompts = response.context["prompts"]
    assert prompts.counts == [("improved", 4), ("regressed", 1), ("unchanged", 1), ("only in A", 1),
                              ("only in B", 1)]
    assert prompts.majority == [("fixed", 2), ("broken", 2), ("both right", 1), ("both wrong", 1)]
    assert [(c.prompt_id, c.correct_a, c.n_a, c.correct_b, c.n_b) for c in prompts.improved] == [
        (p[0].pk, 1, 8, 7, 8), (p[1].pk, 3, 8, 5, 8), (p[4].pk, 0, 8, 1, 8), (p[7].pk, 1, 16, 2, 16)]
    assert [(c.prompt_id, c.change) for c in prompts.regressed] == [(p[2].pk, -0.75)]
    assert all(c.change > 0 for c in prompts.improved) and all(c.change < 0 for c in prompts.regressed)
    assert prompts.improved[1].question == "question 1" and prompts.improved[1].reference_answer == "1"

    html = response.content.decode()
    for group, count in prompts.counts:
        assert f'data-group="{group}">{count}</td>' in html
    for group, count in prompts.majority:
        assert f'data-majority="{group}">{count}</td>' in html
    improved, regressed = table_of(html, "improved"), table_of(html, "regressed")
    assert improved.index(f'data-prompt="{p[0].pk}"') < improved.index(f'data-prompt="{p[1].pk}"')
    assert f'data-prompt="{p[2].pk}"' in regressed and f'data-prompt="{p[2].pk}"' not in improved
    for unlisted in (p[3], p[5], p[6]):  # unchanged and one-sided prompts are only counted
        assert f'data-prompt="{unlisted.pk}"' not in html
    # k/n in A and B, the change signed and coloured by its sign, the vote beside it.
    the_1_in_16 = improved[improved.index(f'data-prompt="{p[7].pk}"'):]
    assert '"num counts">1/16 → 2/16</td>' in the_1_in_16
    assert '<td class="num change better">+0.063</td>' in the_1_in_16
    assert '<td class="majority">✓ → ✗</td>' in the_1_in_16
    assert '"num counts">1/8 → 7/8</td>' in improved and '<td class="num change better">+0.750</td>' in improved
    assert '"num counts">8/8 → 2/8</td>' in regressed and '<td class="num change worse">−0.750</td>' in regressed
    assert "change worse" not in improved and "change better" not in regressed
    assert f'href="{reverse("rollout_list")}?prompt={p[0].pk}"' in improved
    # The question is cut to 200 characters; the reference answer is shown.
    assert p[0].question[:199] + "…" in html and p[0].question not in html and ">42</td>" in html


def test_compare_shows_the_metrics_with_intervals_and_colours_only_a_significant_difference(admin_client, pair):
    a, b, p = pair
    response = compare(admin_client, a.pk, b.pk)
    assert [m.name for m in response.context["metrics"]] == ["prompts", "pass@1", "cons@8"]
    rows = {m.name: m for m in response.context["metrics"]}
    pass1 = rows["pass@1"]
    # The paired difference is over the 6 prompts both have: +0.75, +0.25, −0.75, 0, +0.125, +0.0625.
    assert pass1.interval_difference.n == 6
    assert pass1.interval_difference.mean == pytest.approx((0.75 + 0.25 - 0.75 + 0 + 0.125 + 0.0625) / 6)
    assert pass1.interval_difference.low < 0 < pass1.interval_difference.high and pass1.tone == ""
    assert rows["prompts"].difference_text == "0" and rows["prompts"].tone == ""
    html = response.content.decode()
    assert "tiny-cold vs tiny-rl on gsm-mini" in html and f'href="{reverse("job_detail", args=[a.job_id])}"' in html
    pass1_row = html[html.index('data-metric="pass@1"'):html.index('data-metric="cons@8"')]
    assert 'class="num difference"' in pass1_row and "better" not in pass1_row and "worse" not in pass1_row
    assert "· not significant" in pass1_row and pass1_row.count("95% CI") == 3


def test_a_significant_difference_is_green_with_a_plus_and_red_with_a_minus_the_other_way(admin_client, lineage,
                                                                                          dataset):
    weaker = scored(lineage["cold"], dataset, [2, 3, 2, 3, 2, 3, 2, 3, 2, 3])
    stronger = scored(lineage["rl"], dataset, [5, 4, 4, 5, 3, 6, 4, 5, 4, 5])  # 1 to 3 more in 8 each
    forward = {m.name: m for m in compare(admin_client, weaker.pk, stronger.pk).context["metrics"]}["pass@1"]
    backward = {m.name: m for m in compare(admin_client, stronger.pk, weaker.pk).context["metrics"]}["pass@1"]
    assert forward.tone == "better" and forward.difference_text == "+0.250" and forward.interval_difference.low > 0
    assert backward.tone == "worse" and backward.difference_text == "−0.250" and backward.interval_difference.high < 0
    assert forward.difference_ci.startswith("+") and backward.difference_ci.startswith("−")
    html = compare(admin_client, weaker.pk, stronger.pk).content.decode()
    assert re.search(r'<td class="num difference better">\+0\.250<span class="ci">95% CI \+0\.\d{3} to '
                     r'\+0\.\d{3}</span></td>', html)


def test_compare_lists_at_most_500_prompts_in_a_fixed_number_of_queries(admin_client, lineage, dataset,
                                                                         django_assert_max_num_queries):
    # 2,000 prompt ids that no longer exist: the lists still render, marked as deleted.
    per_a = {str(10_000 + i): result(i % 8, 8, False) for i in range(2000)}
    per_b = {str(10_000 + i): result(8, 8, i % 2 == 0) for i in range(2000)}
    a = evaluate(lineage["cold"], dataset, {"pass@1": 0.4375}, per_a)  # the mean of 0/8 … 7/8
    b = evaluate(lineage["rl"], dataset, {"pass@1": 1.0}, per_b)
    # Session, user, the two evaluations, the listed prompts' text, and the nav's permission check
    # (the user's and its groups' permissions, once per request).
    with django_assert_max_num_queries(6):
        response = compare(admin_client, a.pk, b.pk)
    prompts = response.context["prompts"]
    assert (prompts.improved_total, len(prompts.improved)) == (2000, 500)  # from at most 7/8 to 8/8
    assert prompts.counts[2] == ("unchanged", 0) and prompts.majority[3] == ("both wrong", 1000)
    assert {c.change for c in prompts.improved[:250]} == {1.0}  # 0/8 → 8/8 first
    assert "The 500 biggest changes of 2000." in response.content.decode()
    assert prompts.improved[0].missing and "prompt deleted" in response.content.decode()


def test_compare_refuses_evaluations_of_different_benchmarks(admin_client, scores):
    response = compare(admin_client, scores["rl"].pk, scores["rl_math"].pk)
    assert response.status_code == 400
    assert "is on gsm-mini" in response.content.decode() and "same benchmark" in response.content.decode()


@pytest.mark.parametrize("query, message", [
    ({"a": "abc", "b": "1"}, "must be evaluation ids"),
    ({"a": "1"}, "Pick two evaluations"),
    ({}, "Pick two evaluations"),
])
def test_compare_answers_a_bad_query_with_400(admin_client, query, message):
    response = admin_client.get(reverse("evaluation_compare"), query)
    assert response.status_code == 400 and message in response.content.decode()


@pytest.mark.parametrize("unknown", ["987654", "99999999999999999999"])  # the second overflows a bigint
def test_compare_answers_an_unknown_evaluation_with_404(admin_client, scores, unknown):
    response = compare(admin_client, scores["rl"].pk, unknown)
    assert response.status_code == 404 and f"No evaluation #{unknown}" in response.content.decode()


def test_lineage_order_survives_a_parent_cycle():
    when = datetime(2025, 1, 1, tzinfo=UTC)
    first = ModelVersion(pk=1, name="a", parent_id=2, created_at=when)
    second = ModelVersion(pk=2, name="b", parent_id=1, created_at=when)
    child = ModelVersion(pk=3, name="c", parent_id=2, created_at=when)
    assert [(m.name, depth) for m, depth in lineage_order([child, second, first])] == [("a", 0), ("b", 1), ("c", 2)]


def test_numbers_round_half_up_and_changes_carry_their_sign():
    assert signed(1 / 16) == "+0.063" and signed(-1 / 16) == "−0.063"  # a real minus sign
    assert signed(0.0) == "0.000" and signed(-0.0001) == "0.000"  # what rounds to 0 has no sign
    assert number(0.0625) == "0.063" and number(2 / 3) == "0.667" and signed(6, 0) == "+6"
