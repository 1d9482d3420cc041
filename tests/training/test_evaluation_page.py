import re
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from apps.datasets.models import Dataset, ModelVersion, Prompt
from apps.jobs.models import Job
from apps.training.comparison import lineage_order
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


@pytest.fixture
def scores(lineage, dataset):
    """gsm-mini (k=8) for four checkpoints, tiny-cold twice; math-mini (k=4) for two."""
    math = Dataset.objects.create(name="math-mini")
    m = lineage
    evaluations = {
        "base": evaluate(m["base"], dataset, {"prompts": 6, "pass@1": 0.2, "pass@8": 0.5, "cons@8": 0.25}),
        "cold_old": evaluate(m["cold"], dataset, {"prompts": 6, "pass@1": 0.9, "pass@8": 0.95, "cons@8": 0.9}),
        "cold": evaluate(m["cold"], dataset, {"prompts": 6, "pass@1": 0.4, "pass@8": 0.7, "cons@8": 0.6}),
        "rl": evaluate(m["rl"], dataset, {"prompts": 6, "pass@1": 0.55, "pass@8": 0.8, "cons@8": 0.6}),
        "zero": evaluate(m["zero"], dataset, {"prompts": 6, "pass@1": 0.3, "pass@8": 0.6, "cons@8": 0.35}),
        "rl_math": evaluate(m["rl"], math, {"prompts": 2, "pass@1": 0.1, "pass@4": 0.3, "cons@4": 0.2},
                            k=4, temperature=1.0),
        "zero_math": evaluate(m["zero"], math, {"prompts": 2, "pass@1": 0.15, "pass@4": 0.2, "cons@4": 0.1},
                              k=4, temperature=1.0),
    }
    return evaluations


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
    # tiny-cold shows its latest evaluation (0.4), not the older 0.9.
    assert cell_values(table) == {
        "tiny-base": [(0.2, 0.25), None],
        "tiny-cold": [(0.4, 0.6), None],
        "tiny-rl": [(0.55, 0.6), (0.1, 0.2)],
        "tiny-zero": [(0.3, 0.35), (0.15, 0.1)],
    }
    assert table.rows[1].cells[0].runs == 2 and table.rows[1].cells[0].evaluation == scores["cold"]
    html = response.content.decode()
    assert "latest of 2" in html and html.count("latest of") == 1
    assert "0.900" not in html and "other-base" not in html


def test_the_best_value_of_each_column_is_highlighted_ties_included(admin_client, scores):
    response = admin_client.get(reverse("evaluation_list"))
    assert best_cells(response.context["table"]) == {
        ("tiny-rl", "gsm-mini", "pass1"),
        ("tiny-cold", "gsm-mini", "cons"), ("tiny-rl", "gsm-mini", "cons"),  # a tie at 0.6
        ("tiny-zero", "math-mini", "pass1"), ("tiny-rl", "math-mini", "cons"),
    }
    html = response.content.decode()
    assert html.count('class="num best"') == 5
    rl_gsm_job = reverse("job_detail", args=[scores["rl"].job_id])
    assert re.search(rf'<td class="num best"[^>]*>\s*<a href="{rl_gsm_job}">0\.550</a>', html)
    # Every cell links to its evaluation job; the superseded evaluation's job is not linked.
    for name in ["base", "cold", "rl", "zero", "rl_math", "zero_math"]:
        assert f'href="{reverse("job_detail", args=[scores[name].job_id])}"' in html
    assert f'href="{reverse("job_detail", args=[scores["cold_old"].job_id])}"' not in html


def test_a_column_with_a_single_value_has_nothing_highlighted(admin_client, lineage, dataset):
    evaluate(lineage["base"], dataset, {"pass@1": 0.5, "cons@8": 0.5})
    response = admin_client.get(reverse("evaluation_list"))
    assert best_cells(response.context["table"]) == set()
    assert "num best" not in response.content.decode()


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
    p = [prompt(dataset, long_question, "42")] + [prompt(dataset, f"question {i}", str(i)) for i in range(1, 7)]
    per_a = {
        str(p[0].pk): result(1, 8, False),  # fixed, +0.75
        str(p[1].pk): result(3, 8, False),  # fixed, +0.25
        str(p[2].pk): result(8, 8, True),  # broken, -0.75
        str(p[3].pk): result(6, 8, True),  # both right
        str(p[4].pk): result(0, 8, False),  # both wrong
        str(p[5].pk): result(4, 8, True),  # only in A
    }
    per_b = {
        str(p[0].pk): result(7, 8, True),
        str(p[1].pk): result(5, 8, True),
        str(p[2].pk): result(2, 8, False),
        str(p[3].pk): result(6, 8, True),
        str(p[4].pk): result(1, 8, False),
        str(p[6].pk): result(8, 8, True),  # only in B
    }
    a = evaluate(lineage["cold"], dataset, {"prompts": 6, "pass@1": 0.4, "pass@8": 0.7, "cons@8": 0.5}, per_a)
    b = evaluate(lineage["rl"], dataset, {"prompts": 6, "pass@1": 0.55, "pass@8": 0.8, "cons@8": 0.5}, per_b)
    return a, b, p


def compare(client, a, b):
    return client.get(reverse("evaluation_compare"), {"a": a, "b": b})


def test_compare_groups_prompts_into_fixed_broken_both_and_only(admin_client, pair):
    a, b, p = pair
    response = compare(admin_client, a.pk, b.pk)
    assert response.status_code == 200
    prompts = response.context["prompts"]
    assert prompts.counts == [("fixed", 2), ("broken", 1), ("both right", 1), ("both wrong", 1),
                              ("only in A", 1), ("only in B", 1)]
    assert [(c.prompt_id, c.correct_a, c.n_a, c.correct_b, c.n_b) for c in prompts.fixed] == [
        (p[0].pk, 1, 8, 7, 8), (p[1].pk, 3, 8, 5, 8)]  # biggest change first
    assert [(c.prompt_id, c.change) for c in prompts.broken] == [(p[2].pk, -0.75)]
    assert prompts.fixed[1].question == "question 1" and prompts.fixed[1].reference_answer == "1"

    html = response.content.decode()
    for group, count in prompts.counts:
        assert f'data-group="{group}">{count}</td>' in html
    fixed_table = html[html.index('class="prompt-changes fixed"'):html.index('class="prompt-changes broken"')]
    broken_table = html[html.index('class="prompt-changes broken"'):]
    assert fixed_table.index(f'data-prompt="{p[0].pk}"') < fixed_table.index(f'data-prompt="{p[1].pk}"')
    assert f'data-prompt="{p[2].pk}"' in broken_table and f'data-prompt="{p[2].pk}"' not in fixed_table
    for unlisted in (p[3], p[4], p[5], p[6]):  # both right, both wrong and one-sided prompts are only counted
        assert f'data-prompt="{unlisted.pk}"' not in html
    assert "1/8" in fixed_table and "7/8" in fixed_table and "+0.75" in fixed_table
    assert "8/8" in broken_table and "2/8" in broken_table and "-0.75" in broken_table
    assert f'href="{reverse("rollout_list")}?prompt={p[0].pk}"' in fixed_table
    # The question is cut to 200 characters; the reference answer is shown.
    assert p[0].question[:199] + "…" in html and p[0].question not in html and ">42</td>" in html


def test_compare_shows_both_metrics_with_the_difference(admin_client, pair):
    a, b, _ = pair
    response = compare(admin_client, a.pk, b.pk)
    assert [m.name for m in response.context["metrics"]] == ["prompts", "pass@1", "pass@8", "cons@8"]
    rows = {m.name: (m.a, m.b, m.difference) for m in response.context["metrics"]}
    assert rows["pass@1"][:2] == (0.4, 0.55) and rows["pass@1"][2] == pytest.approx(0.15)
    assert rows["cons@8"] == (0.5, 0.5, 0.0) and rows["prompts"] == (6, 6, 0)
    html = response.content.decode()
    assert "+0.150" in html and "tiny-cold vs tiny-rl on gsm-mini" in html
    assert f'href="{reverse("job_detail", args=[a.job_id])}"' in html


def test_compare_lists_at_most_500_prompts_in_a_fixed_number_of_queries(admin_client, lineage, dataset,
                                                                         django_assert_max_num_queries):
    # 2,000 prompt ids that no longer exist: the lists still render, marked as deleted.
    per_a = {str(10_000 + i): result(i % 8, 8, False) for i in range(2000)}
    per_b = {str(10_000 + i): result(8, 8, i % 2 == 0) for i in range(2000)}
    a = evaluate(lineage["cold"], dataset, {"pass@1": 0.2}, per_a)
    b = evaluate(lineage["rl"], dataset, {"pass@1": 0.9}, per_b)
    # Session, user, the two evaluations, the listed prompts' text, and the nav's permission check
    # (the user's and its groups' permissions, once per request).
    with django_assert_max_num_queries(6):
        response = compare(admin_client, a.pk, b.pk)
    prompts = response.context["prompts"]
    assert (prompts.fixed_total, len(prompts.fixed)) == (1000, 500)
    assert prompts.counts[3] == ("both wrong", 1000)
    assert {c.change for c in prompts.fixed[:125]} == {1.0}  # 0/8 → 8/8 first
    assert "The 500 biggest changes of 1000." in response.content.decode()
    assert prompts.fixed[0].missing and "prompt deleted" in response.content.decode()


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
