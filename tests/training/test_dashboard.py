"""The run dashboard: per-step curves, the generation-job buckets, reward-hacking flags, JSON and CSV."""

import csv
import io

import pytest
from django.urls import reverse

from apps.core.bulk import bulk_insert
from apps.datasets.models import Prompt
from apps.jobs.models import Job
from apps.rollouts.models import Rollout
from apps.training.models import StepMetric
from workers.rewards.shape import OUTSIDE_TEMPLATE, REPEATED_TEXT, SHORT_REASONING

pytestmark = pytest.mark.django_db

LONG_ANSWER = "7" * 200


def rollout(job, prompt, step, sample, total, accuracy, fmt, *, correct, format_ok, language, tokens,
            finish="stop", reflection=False, flags=0, answer="42"):
    return {
        "job_id": job.pk, "prompt_id": prompt.pk, "step": step, "sample_index": sample,
        "completion": f"<think>...</think><answer>{answer}</answer>", "answer": answer,
        "total_reward": total, "rewards": {"accuracy": {"value": accuracy, "weight": 1.0, "details": {}},
                                           "format": {"value": fmt, "weight": 1.0, "details": {}}},
        "is_correct": correct, "format_ok": format_ok, "language_consistency": language,
        "completion_tokens": tokens, "length_chars": 1000, "finish_reason": finish,
        "has_reflection": reflection, "shape_flags": flags,
    }


@pytest.fixture
def prompt(dataset):
    return Prompt.objects.create(dataset=dataset, question="What is 6 * 7?", content_hash="q1")


@pytest.fixture
def grpo_job(prompt):
    """Three steps of rollouts with known values; the best total reward is 2.0, so "high" means >= 1.6."""
    job = Job.objects.create(kind="grpo", status="succeeded", label="GRPO test run")
    rows = [
        # step 1: nothing reaches 1.6
        rollout(job, prompt, 1, 0, 0.0, 0, 0, correct=False, format_ok=False, language=1.0, tokens=100),
        rollout(job, prompt, 1, 1, 1.0, 1, 0, correct=True, format_ok=True, language=0.5, tokens=300,
                finish="length", reflection=True),
        # step 2: c is high reward with short reasoning (counted); d has the same shape but a low reward;
        # e is high reward, repetitive, outside the template and cut at the length cap; f is cut but low.
        rollout(job, prompt, 2, 0, 2.0, 1, 1, correct=True, format_ok=True, language=1.0, tokens=50,
                flags=SHORT_REASONING),
        rollout(job, prompt, 2, 1, 0.5, 0, 0.5, correct=None, format_ok=None, language=None, tokens=150,
                flags=SHORT_REASONING),
        rollout(job, prompt, 2, 2, 1.8, 1, 0.8, correct=True, format_ok=False, language=0.9, tokens=400,
                finish="length", reflection=True, flags=REPEATED_TEXT | OUTSIDE_TEMPLATE, answer=LONG_ANSWER),
        rollout(job, prompt, 2, 3, 1.0, 1, 0, correct=False, format_ok=True, language=0.95, tokens=400,
                finish="length", reflection=True),
        # step 3: g is high reward with nothing suspicious; h is repetitive but low
        rollout(job, prompt, 3, 0, 1.7, 1, 0.7, correct=True, format_ok=True, language=1.0, tokens=100),
        rollout(job, prompt, 3, 1, 0.0, 0, 0, correct=False, format_ok=True, language=1.0, tokens=100,
                flags=REPEATED_TEXT),
    ]
    assert bulk_insert(Rollout, rows) == 8
    StepMetric.objects.bulk_create([
        StepMetric(job=job, step=1, metrics={"kl": 0.01, "loss": 0.5, "reward_std": 0.3, "entropy": 1.2}),
        StepMetric(job=job, step=2, metrics={"kl": 0.02, "loss": 0.4, "reward_std": 0.6}),
        # a step the trainer logged without rollouts written for it
        StepMetric(job=job, step=4, metrics={"kl": 0.04, "loss": 0.3, "learning_rate": 1e-6}),
    ])
    return job


def fetch(client, job, **params):
    response = client.get(reverse("job_dashboard_data", args=[job.pk]), params)
    assert response.status_code == 200, response.content
    return response.json()


def values(data):
    return {s["key"]: s["values"] for s in data["series"]}


def by_id(job, step, sample):
    return Rollout.objects.get(job=job, step=step, sample_index=sample)


def test_per_step_series_are_exact(admin_client, grpo_job):
    data = fetch(admin_client, grpo_job)
    assert data["x"] == {"key": "step", "label": "training step", "values": [1, 2, 3, 4]}
    assert data["rollouts"] == 8
    assert data["job"] == {"id": grpo_job.pk, "kind": "grpo", "label": "GRPO test run", "status": "succeeded",
                           "live": False}
    series = values(data)
    assert series["rollouts"] == [2, 4, 2, None]
    assert series["reward_mean"] == [0.5, 1.325, 0.85, None]
    assert series["reward/accuracy"] == [0.5, 0.75, 0.5, None]
    assert series["reward/format"] == [0.0, 0.575, 0.35, None]
    # d is ungraded (null) at step 2: 2 correct of 3 graded, not of 4
    assert series["accuracy"] == [0.5, 0.666667, 0.5, None]
    assert series["format_ok"] == [0.5, 0.666667, 1.0, None]
    assert series["response_length"] == [200.0, 250.0, 100.0, None]
    assert series["truncated"] == [0.5, 0.5, 0.0, None]
    assert series["reflection"] == [0.5, 0.5, 0.0, None]
    assert series["language_mixing"] == [0.5, 0.333333, 0.0, None]
    # the trainer's figures, with gaps where a step has none; learning_rate is not drawn
    assert series["kl"] == [0.01, 0.02, None, 0.04]
    assert series["loss"] == [0.5, 0.4, None, 0.3]
    assert series["reward_std"] == [0.3, 0.6, None, None]
    assert series["entropy"] == [1.2, None, None, None]
    assert "learning_rate" not in series
    labels = {s["key"]: s["label"] for s in data["series"]}
    assert labels["response_length"] == "mean completion tokens"
    charts = {c["id"]: c["series"] for c in data["charts"]}
    assert charts["reward"] == ["reward_mean", "reward/accuracy", "reward/format", "reward_std"]
    assert charts["trainer"] == ["kl", "loss", "entropy"]
    assert set(charts) == {"reward", "accuracy", "length", "truncated", "reflection", "language", "trainer", "flags"}


def test_flags_count_only_high_reward_rollouts_of_each_shape(admin_client, grpo_job):
    data = fetch(admin_client, grpo_job)
    flags = data["flags"]
    assert flags["min_reward"] == pytest.approx(1.6)
    assert "80% of the job's best" in flags["rule"]
    assert [c["key"] for c in flags["columns"]] == ["short_reasoning", "repeated_text", "outside_template",
                                                    "length_cap"]
    series = values(data)
    assert series["high_reward"] == [0, 2, 1, None]
    assert series["flag/short_reasoning"] == [0, 1, 0, None]  # c, not the low-reward d
    assert series["flag/repeated_text"] == [0, 1, 0, None]  # e, not the low-reward h
    assert series["flag/outside_template"] == [0, 1, 0, None]
    assert series["flag/length_cap"] == [0, 1, 0, None]  # e; b and f are cut too but low
    # the table lists only steps with a flagged rollout
    assert flags["rows"] == [{"x": 2, "high_reward": 2, "counts": [1, 1, 1, 1]}]
    c, e = by_id(grpo_job, 2, 0), by_id(grpo_job, 2, 2)
    recent = flags["recent"]
    assert [r["id"] for r in recent] == [e.pk, c.pk]  # newest first; g is high but not suspicious
    assert recent[0]["flags"] == ["repeated text", "text outside the template", "length at the cap"]
    assert recent[0]["answer"] == LONG_ANSWER[:120]
    assert recent[0]["url"] == reverse("rollout_detail", args=[e.pk])
    assert recent[1] | {"url": None} == {"id": c.pk, "step": 2, "reward": 2.0, "answer": "42", "url": None,
                                         "flags": ["answer with almost no reasoning"]}


def test_min_reward_overrides_the_threshold(admin_client, grpo_job):
    data = fetch(admin_client, grpo_job, min_reward="0.4")
    series = values(data)
    assert data["flags"]["min_reward"] == 0.4
    assert series["high_reward"] == [1, 4, 1, None]
    assert series["flag/short_reasoning"] == [0, 2, 0, None]  # now d counts too
    assert series["flag/length_cap"] == [1, 2, 0, None]  # b, and e and f
    assert series["flag/repeated_text"] == [0, 1, 0, None]  # h (0.0) is still below


@pytest.mark.parametrize("bad", ["abc", "nan", "inf", "1e999", "0.5; drop"])
def test_a_malformed_min_reward_is_a_clear_400(admin_client, grpo_job, bad):
    for name in ["job_dashboard_data", "job_dashboard_csv", "job_dashboard"]:
        response = admin_client.get(reverse(name, args=[grpo_job.pk]), {"min_reward": bad})
        assert response.status_code == 400, name
        assert b"min_reward must be a" in response.content, name
    assert admin_client.get(reverse("job_dashboard_data", args=[grpo_job.pk])).status_code == 200


def test_csv_has_a_header_and_one_row_per_step(admin_client, grpo_job):
    response = admin_client.get(reverse("job_dashboard_csv", args=[grpo_job.pk]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert f"job-{grpo_job.pk}-dashboard.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == [
        "step", "rollouts", "reward_mean", "reward/accuracy", "reward/format", "accuracy", "format_ok",
        "response_length", "truncated", "reflection", "language_mixing", "reward_std", "kl", "loss", "entropy",
        "high_reward", "flag/short_reasoning", "flag/repeated_text", "flag/outside_template", "flag/length_cap",
    ]
    assert len(rows) == 5
    assert rows[2] == ["2", "4", "1.325", "0.75", "0.575", "0.666667", "0.666667", "250.0", "0.5", "0.5",
                       "0.333333", "0.6", "0.02", "0.4", "", "2", "1", "1", "1", "1"]
    assert rows[4] == ["4"] + [""] * 10 + ["", "0.04", "0.3", ""] + [""] * 5


def test_a_generation_job_is_drawn_over_rollouts_in_writing_order(admin_client, prompt):
    job = Job.objects.create(kind="generate", status="running")
    rows = [
        rollout(job, prompt, 0, k, k / 119, k / 119, 1, correct=k % 2 == 0, format_ok=True, language=1.0,
                tokens=None) | {"length_chars": k}
        for k in range(120)
    ]
    bulk_insert(Rollout, rows)
    data = fetch(admin_client, job)
    assert data["job"]["live"] is True
    assert data["x"]["key"] == "rollouts_written"
    assert data["x"]["label"] == "rollouts in the order written"
    xs = data["x"]["values"]
    assert len(xs) == 50 and xs == sorted(set(xs)) and xs[-1] == 120
    series = values(data)
    assert sum(series["rollouts"]) == 120
    # Ids are consecutive here: bucket 0 covers ids first..first+2 (3 * 50 // 120 == 1), lengths 0, 1, 2.
    assert xs[0] == 3 and series["rollouts"][0] == 3
    length = next(s for s in data["series"] if s["key"] == "response_length")
    assert length["label"].startswith("mean response length (characters")  # no token counts: says so
    assert length["values"][0] == 1.0 and length["values"][-1] > 110
    assert series["reward_mean"][-1] > series["reward_mean"][0]
    assert "trainer" not in {c["id"] for c in data["charts"]}


def test_the_page_draws_from_the_json_and_links_flagged_rollouts(admin_client, grpo_job):
    response = admin_client.get(reverse("job_dashboard", args=[grpo_job.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "vendor/chartjs/chart.umd.min.js" in html and "js/dashboard.js" in html
    assert f'data-url="{reverse("job_dashboard_data", args=[grpo_job.pk])}"' in html
    assert 'data-live="false"' in html
    assert f'href="{reverse("job_dashboard_csv", args=[grpo_job.pk])}"' in html
    e = by_id(grpo_job, 2, 2)
    assert f'href="{reverse("rollout_detail", args=[e.pk])}"' in html
    assert "text outside the template" in html and LONG_ANSWER[:120] in html and LONG_ANSWER[:121] not in html
    assert 'id="dashboard-empty" class="dashboard-empty" hidden' in html  # it has rollouts
    assert "<script>" not in html  # the page's code lives in dashboard.js


def test_the_override_travels_to_the_json_and_csv_links(admin_client, grpo_job):
    html = admin_client.get(reverse("job_dashboard", args=[grpo_job.pk]), {"min_reward": "0.4"}).content.decode()
    assert f'data-url="{reverse("job_dashboard_data", args=[grpo_job.pk])}?min_reward=0.4"' in html
    assert f'{reverse("job_dashboard_csv", args=[grpo_job.pk])}?min_reward=0.4' in html


def test_an_empty_job_renders_a_clear_message(admin_client):
    job = Job.objects.create(kind="generate", status="queued")
    response = admin_client.get(reverse("job_dashboard", args=[job.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="dashboard-empty" class="dashboard-empty" >' in html and "No rollouts yet." in html
    assert 'data-live="true"' in html and "No high-reward rollout has a suspicious shape." in html
    data = fetch(admin_client, job)
    assert (data["rollouts"], data["x"]["values"], data["charts"], data["flags"]["recent"]) == (0, [], [], [])
    assert data["flags"]["rule"] == "no rollout has a reward yet"
    assert fetch(admin_client, job, min_reward="0.5")["flags"]["recent"] == []
    rows = list(csv.reader(io.StringIO(admin_client.get(reverse("job_dashboard_csv", args=[job.pk])).content.decode())))
    assert rows[0][0] == "step" and len(rows) == 1


def test_a_missing_job_is_404_and_any_user_with_a_role_may_look(client, users, grpo_job):
    for name in ["job_dashboard", "job_dashboard_data", "job_dashboard_csv"]:
        assert client.get(reverse(name, args=[grpo_job.pk])).status_code == 302, name  # login first
    client.force_login(users["stranger"])  # no role at all: the "no role yet" page, no data
    for name in ["job_dashboard", "job_dashboard_data", "job_dashboard_csv"]:
        assert client.get(reverse(name, args=[grpo_job.pk])).status_code == 403, name
    client.force_login(users["viewer"])
    for name in ["job_dashboard", "job_dashboard_data", "job_dashboard_csv"]:
        assert client.get(reverse(name, args=[grpo_job.pk])).status_code == 200, name
        assert client.get(reverse(name, args=[grpo_job.pk + 1000])).status_code == 404, name


def test_the_job_page_links_the_dashboard_for_rollout_jobs_only(admin_client, grpo_job):
    url = reverse("job_dashboard", args=[grpo_job.pk])
    assert f'href="{url}"' in admin_client.get(reverse("job_detail", args=[grpo_job.pk])).content.decode()
    other = Job.objects.create(kind="import_prompts", status="succeeded")
    html = admin_client.get(reverse("job_detail", args=[other.pk])).content.decode()
    assert reverse("job_dashboard", args=[other.pk]) not in html


def test_no_positive_reward_means_no_high_reward_rollouts(admin_client, prompt):
    job = Job.objects.create(kind="grpo", status="running")
    bulk_insert(Rollout, [rollout(job, prompt, 1, 0, -1.0, 0, 0, correct=False, format_ok=False, language=1.0,
                                  tokens=10, flags=SHORT_REASONING)])
    flags = fetch(admin_client, job)["flags"]
    assert flags["min_reward"] is None and flags["recent"] == []
    assert "no rollout earned a positive reward" in flags["rule"]
    assert fetch(admin_client, job, min_reward="-2")["flags"]["recent"][0]["flags"] == [
        "answer with almost no reasoning"]


def test_the_curves_cost_one_grouped_query_however_many_steps(grpo_job, django_assert_num_queries):
    from apps.training.dashboard import dashboard_data

    # bounds, the latest rollout's components, the GROUP BY, the trainer's StepMetric rows, the checkpoints'
    # evaluations, the token-entropy quantiles, the flagged list (and one per run-health alert for its
    # examples: this run raises none)
    with django_assert_num_queries(7) as captured:
        dashboard_data(grpo_job)
    rollout_groupings = [q for q in captured.captured_queries if "GROUP BY" in q["sql"]
                         and "rollouts_rollouttokens" not in q["sql"]]  # the token traces' quantiles are their own
    assert len(rollout_groupings) == 1
