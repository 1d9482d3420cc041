import pytest
from django.db import connection
from django.urls import reverse

from apps.core import counting
from apps.curation.models import Annotation, ReviewItem, ReviewQueue
from apps.datasets.models import Dataset, ModelVersion
from apps.jobs.models import Job
from apps.rollouts.browse import RolloutFilterForm
from apps.rollouts.models import Rollout
from tests.rollout_factory import add_prompt, add_rollouts, solved

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(dataset, users):
    """Two prompts, a base and a trained checkpoint, a GRPO-like job with two steps of 4 rollouts each."""
    base = ModelVersion.objects.create(name="base", uri="/m/base")
    trained = ModelVersion.objects.create(name="trained", uri="/m/trained", parent=base)
    job = Job.objects.create(kind="grpo", status="succeeded")
    clips = add_prompt(dataset, "Natalia sold clips to 48 of her friends in April. How many in all?")
    ducks = add_prompt(dataset, "Janet's ducks lay 16 eggs per day. How many dollars does she make?", "18")

    def rewards(acc):
        return {"math_accuracy": {"value": acc, "weight": 1.0, "details": {"extracted": "72"}},
                "format": {"value": 1.0, "weight": 0.5, "details": {}}}

    add_rollouts(job, clips, [solved(), solved("71"), solved("72", "Wait, let me re-check: 48 + 24 = 72."),
                              "<think>" + "x " * 300 + "</think>"],
                 step=1, model_version_id=base.pk, total_reward=[1.5, 0.5, 1.5, 0.0],
                 is_correct=[True, False, True, False], format_ok=[True, True, True, False],
                 rewards=[rewards(1.0), rewards(0.0), rewards(1.0), {}], finish_reason=["stop"] * 3 + ["length"],
                 language_consistency=[1.0, 1.0, 0.9, 0.5])
    add_rollouts(job, ducks, [solved("18", "16 - 3 - 4 = 9 eggs, sold at $2 each: 18 dollars."), solved("9")],
                 step=2, model_version_id=trained.pk, total_reward=[1.5, 0.5], is_correct=[True, False],
                 rewards=[rewards(1.0), rewards(0.0)])
    return {"job": job, "base": base, "trained": trained, "clips": clips, "ducks": ducks}


def ids(response):
    return [r.pk for r in response.context["page"].items]


def browse(client, **params):
    response = client.get(reverse("rollout_list"), params)
    assert response.status_code == 200, response.content.decode()[:2000]
    return response


@pytest.mark.parametrize("params, expected", [
    ({}, 6),
    ({"correct": "yes"}, 3),
    ({"correct": "no", "finish": "length"}, 1),
    ({"reward_min": "1", "reward_max": "1.5"}, 3),
    ({"component": "math_accuracy", "component_max": "0.5"}, 2),
    ({"step_min": "2"}, 2),
    ({"reflection": "yes"}, 1),
    ({"language_min": "0.95"}, 2),  # only rows with a measured consistency count
    ({"length_min": "500"}, 1),
    ({"format_ok": "no"}, 1),
    ({"annotated": "no"}, 6),
])
def test_each_filter_narrows_the_page(admin_client, run, params, expected):
    assert len(ids(browse(admin_client, **params))) == expected


def test_filters_by_dataset_model_job_and_prompt(admin_client, run):
    other = Dataset.objects.create(name="other")
    assert len(ids(browse(admin_client, dataset="gsm-mini"))) == 6
    assert ids(browse(admin_client, dataset=other.name)) == []
    assert len(ids(browse(admin_client, model=run["trained"].pk))) == 2
    assert len(ids(browse(admin_client, job=run["job"].pk, prompt=run["clips"].pk))) == 4


def test_annotated_filter(admin_client, run, users):
    rollout = Rollout.objects.filter(prompt=run["ducks"]).first()
    queue = ReviewQueue.objects.create(name="q")
    item = ReviewItem.objects.create(queue=queue, rollout=rollout, position=1)
    Annotation.objects.create(item=item, annotator=users["admin"], verdict="accept")
    assert ids(browse(admin_client, annotated="yes")) == [rollout.pk]
    assert rollout.pk not in ids(browse(admin_client, annotated="no"))


def test_full_text_search_covers_completion_and_question(admin_client, run):
    by_completion = ids(browse(admin_client, q="eggs sold"))  # both words, stemmed ("sold" in the text)
    assert by_completion == list(Rollout.objects.filter(completion__contains="eggs").values_list("pk", flat=True))
    by_question = ids(browse(admin_client, q="ducks"))  # only in the prompt's question
    assert sorted(by_question) == sorted(Rollout.objects.filter(prompt=run["ducks"]).values_list("pk", flat=True))
    assert ids(browse(admin_client, q="re-check")) == [Rollout.objects.get(completion__contains="re-check").pk]
    assert ids(browse(admin_client, q="zebra")) == []


def test_search_uses_the_gin_index_on_postgres(run):
    form = RolloutFilterForm({"q": "ducks eggs"})
    assert form.is_valid()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a 6-row table is otherwise scanned whatever the index
        plan = form.rollouts().explain()
    assert "rollout_completion_search" in plan


def test_the_sqlite_fallback_needs_every_word():
    from apps.core.search import like_all_words

    condition = like_all_words("completion", 'eggs "sold at" -ducks or')
    words = sorted(child[1] for child in condition.children)
    assert words == ["at", "ducks", "eggs", "sold"]


@pytest.mark.parametrize("sort, key, reverse", [
    ("reward", lambda r: (r.total_reward, r.pk), True),
    ("reward_asc", lambda r: (r.total_reward, r.pk), False),
    ("length", lambda r: (r.length_chars, r.pk), True),
    ("oldest", lambda r: r.pk, False),
])
def test_keyset_pages_visit_every_row_once_in_order_across_ties(admin_client, run, sort, key, reverse):
    job = run["job"]
    add_rollouts(job, run["clips"], [solved(str(i)) for i in range(130)], step=5,
                 total_reward=[float(i % 3) for i in range(130)])
    Rollout.objects.filter(job=job, step=5, sample_index=7).update(total_reward=None)  # left out of reward order
    expected = sorted(Rollout.objects.exclude(total_reward=None) if "reward" in sort else Rollout.objects.all(),
                      key=key, reverse=reverse)
    seen, after, pages = [], None, 0
    while True:
        params = {"sort": sort, **({"after": after} if after else {})}
        response = browse(admin_client, **params)
        seen += ids(response)
        pages += 1
        after = response.context["page"].next_after
        if not after:
            break
    assert seen == [r.pk for r in expected]
    assert pages == 3

    pages_back, before = [], response.context["page"].previous_before  # from the last page back to the first
    while before:
        response = browse(admin_client, sort=sort, before=before)
        pages_back.insert(0, ids(response))
        before = response.context["page"].previous_before
    assert [len(p) for p in pages_back] == [50, 50]
    assert sum(pages_back, []) == seen[:100]


def test_filter_state_lives_in_the_url_and_htmx_gets_only_the_results(admin_client, run):
    full = browse(admin_client, correct="yes", sort="reward")
    html = full.content.decode()
    assert 'value="yes" selected' in html and "<html" in html
    partial = admin_client.get(reverse("rollout_list"), {"correct": "yes", "q": "", "job": ""}, HTTP_HX_REQUEST="true")
    assert "<html" not in partial.content.decode() and "counting" in partial.content.decode()
    assert partial["HX-Push-Url"] == "/rollouts/?correct=yes"  # the address bar keeps only the fields set
    link = admin_client.get(reverse("rollout_list"), {"correct": "yes", "sort": "reward"})
    assert ids(link) == ids(full)


@pytest.mark.parametrize("params, message", [
    ({"reward_min": "abc"}, "Enter a number"),
    ({"sort": "random()"}, "Select a valid choice"),
    ({"step_min": "5", "step_max": "2"}, "must be at least step min"),
    ({"component_min": "1"}, "name the reward component"),
    ({"component": "a' OR 1=1"}, "slug"),
    ({"job": "1; drop table"}, "Enter a whole number"),
    ({"sort": "reward", "after": "not-a-cursor"}, "must come from a page"),
    ({"after": "x'"}, "must be a row id"),
    ({"model": "999999"}, "Select a valid choice"),
])
def test_a_malformed_filter_is_a_clear_400(admin_client, run, params, message):
    response = admin_client.get(reverse("rollout_list"), params)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_counts_are_exact_when_fast_and_labelled_estimates_otherwise(admin_client, run):
    html = admin_client.get(reverse("rollout_count"), {"correct": "yes"}).content.decode()
    assert "3 rollouts" in html and "estimate" not in html
    unfiltered = admin_client.get(reverse("rollout_count")).content.decode()
    assert "estimate" in unfiltered  # the table's row estimate: never a full COUNT(*)


def test_a_slow_count_falls_back_to_the_planner_estimate_and_restores_the_timeout(run):
    from django.db.models.expressions import RawSQL

    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        before = cursor.fetchone()[0]
    slow = Rollout.objects.filter(pk__in=RawSQL("SELECT id FROM rollouts_rollout, pg_sleep(0.5) AS s", []))
    count = counting.fast_count(slow)
    assert count.exact is False and count.value >= 1
    fast = counting.fast_count(Rollout.objects.filter(is_correct=True))
    assert (fast.value, fast.exact) == (3, True)
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == before
