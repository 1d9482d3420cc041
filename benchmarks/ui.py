"""Rollout browser benchmark: server time of its pages over 1M rollouts, against Paginator's OFFSET and COUNT.

    python benchmarks/ui.py [--rollouts N] [--repeat R]

Fills a scratch Postgres database (default postgres://postgres@127.0.0.1:5432/r1bench_ui,
created and migrated on first use; kept between runs, refilled when its size differs
from --rollouts) with N rollouts in 10 GRPO-like jobs: groups of 16 samples of 8
prompts per step, about 1 KB of chain of thought each, rewards with two components,
and the usual share of correct, truncated and flagged rollouts. One completion in
about 100 holds the word "hexagon"; one question in 50 mentions "aquarium".

Then, for four pages of the browser (the newest rollouts; one job's correct
rollouts with reward ≥ 1 by reward; a full-text search; page 100 of the newest),
it times R requests each:

- "view": the whole Django view through the test client (middleware, session,
  form, keyset query, template), i.e. the server time of a real request;
- "keyset": the browser's page query alone (`RolloutFilterForm.page`);
- "offset": Django's `Paginator` on the same filtered queryset: COUNT(*) and
  OFFSET/LIMIT, the obvious way to page, for the same page number.

The count that the browser loads apart (its own htmx request) is timed as its own row.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_db import machine, setup_django

URL = "postgres://postgres@127.0.0.1:5432/r1bench_ui"
JOBS = 10
GROUP = 16
PROMPTS = 1000
PROMPTS_PER_STEP = 8
TEXT_VARIANTS = 4096
PER_PAGE = 50


def fill(n_rollouts: int) -> None:
    """Write the rollouts with one INSERT … SELECT over generate_series: the text comes from a table of variants."""
    import random

    from django.db import connection

    from apps.core.bulk import bulk_insert
    from apps.datasets.models import Dataset, ModelVersion, Prompt
    from apps.jobs.models import Job

    with connection.cursor() as c:
        c.execute("TRUNCATE rollouts_rollouttokens, rollouts_rollout, datasets_prompt, jobs_job, "
                  "training_modelversion, datasets_dataset RESTART IDENTITY CASCADE")
    rng = random.Random(0)
    words = ["we", "need", "the", "value", "of", "x", "so", "that", "both", "sides", "hold", "first", "compute",
             "then", "simplify", "so", "therefore", "the", "sum", "of", "squares", "is", "equal", "hence", "the",
             "answer", "consider", "the", "case", "where", "n", "is", "even", "odd", "prime", "factor", "divide",
             "multiply", "integer", "root", "substitute", "back", "verify", "the", "result", "step", "because",
             "since", "thus"]
    dataset = Dataset.objects.create(name="bench")
    questions = [" ".join(rng.choices(words, k=25)) + (" aquarium" if i % 50 == 0 else "") + f" #{i}?"
                 for i in range(PROMPTS)]
    bulk_insert(Prompt, [{"dataset_id": dataset.pk, "question": q, "reference_answer": str(i),
                          "content_hash": f"h{i}"} for i, q in enumerate(questions)])
    model = ModelVersion.objects.create(name="bench-base", uri="/bench")
    jobs = [Job.objects.create(kind="grpo", status="succeeded").pk for _ in range(JOBS)]
    first_prompt = Prompt.objects.order_by("pk").values_list("pk", flat=True).first()
    texts = [" ".join(rng.choices(words, k=170)) + (" hexagon" if i % 100 == 0 else "") for i in range(TEXT_VARIANTS)]
    per_job = n_rollouts // JOBS
    per_step = GROUP * PROMPTS_PER_STEP
    started = time.perf_counter()
    with connection.cursor() as c:
        c.execute("CREATE TEMP TABLE variants (i int PRIMARY KEY, t text)")
        c.executemany("INSERT INTO variants VALUES (%s, %s)", list(enumerate(texts)))
        c.execute("CREATE TEMP TABLE bench_jobs (n int PRIMARY KEY, id bigint)")
        c.executemany("INSERT INTO bench_jobs VALUES (%s, %s)", list(enumerate(jobs)))
        c.execute(
            """
            INSERT INTO rollouts_rollout (job_id, prompt_id, model_version_id, step, "group", sample_index,
                prompt_text, completion, reasoning, answer, completion_tokens, finish_reason, total_reward,
                rewards, advantage, is_correct, format_ok, language_consistency, length_chars, has_reflection,
                shape_flags, metadata, created_at)
            SELECT j.id, %(first_prompt)s + (g / %(group)s) %% %(prompts)s, %(model)s,
                   (g %% %(per_job)s) / %(per_step)s, (g / %(group)s) %% %(prompts_per_step)s, g %% %(group)s,
                   'User: question ' || g / %(group)s,
                   '<think>' || v.t || '</think> <answer>' || (g %% 97) || '</answer>',
                   v.t, (g %% 97)::text, 180 + g %% 300, CASE WHEN g %% 40 = 0 THEN 'length' ELSE 'stop' END,
                   r.correct + r.fmt * 0.5,
                   jsonb_build_object('math_accuracy', jsonb_build_object('value', r.correct, 'weight', 1.0),
                                      'format', jsonb_build_object('value', r.fmt, 'weight', 0.5)),
                   r.correct - 0.3, r.correct = 1, r.fmt = 1, 0.9 + (g %% 11) / 100.0, length(v.t) + 40,
                   g %% 9 = 0, CASE WHEN g %% 200 = 0 THEN 1 ELSE 0 END, '{}'::jsonb, now()
            FROM generate_series(0, %(n)s - 1) AS g
            JOIN bench_jobs j ON j.n = g / %(per_job)s
            JOIN variants v ON v.i = (g::bigint * 7919) %% %(variants)s
            CROSS JOIN LATERAL (SELECT ((hashint4(g)::bigint %% 10 + 10) %% 10 < 3)::int AS correct,
                                       ((hashint4(g + 1)::bigint %% 10 + 10) %% 10 < 9)::int AS fmt) r
            """,
            {"first_prompt": first_prompt, "group": GROUP, "prompts": PROMPTS, "model": model.pk,
             "per_job": per_job, "per_step": per_step, "prompts_per_step": PROMPTS_PER_STEP,
             "variants": TEXT_VARIANTS, "n": per_job * JOBS},
        )
        # Every rollout gets a token trace's summaries (the arrays are empty: the browser never reads them).
        # Max entropy spreads over 0-6 nats, a tail of 1 in 20 above 5, as sampled GRPO completions do.
        c.execute(
            """
            INSERT INTO rollouts_rollouttokens (rollout_id, job_id, n_tokens, token_ids, logprobs, entropy, top_k,
                pieces, vocab_ids, entropy_kind, max_entropy, mean_entropy, mean_logprob, min_logprob)
            SELECT id, job_id, completion_tokens, '', '', '', 0, '', true, 'sampled',
                   h.u * 5 + CASE WHEN h.tail THEN 1 ELSE 0 END, h.u, -h.u / 2, -h.u * 4
            FROM rollouts_rollout
            CROSS JOIN LATERAL (SELECT ((hashint8(id)::bigint % 1000 + 1000) % 1000) / 1000.0 AS u,
                                       (hashint8(id + 7)::bigint % 20 = 0) AS tail) h
            """
        )
        c.execute("ANALYZE rollouts_rollout")
        c.execute("ANALYZE rollouts_rollouttokens")
        c.execute("ANALYZE datasets_prompt")
    print(f"filled {per_job * JOBS:,} rollouts and their token summaries in {time.perf_counter() - started:.0f} s")


def rollout_count() -> int:
    from django.db import connection

    with connection.cursor() as c:
        c.execute("SELECT count(*) FROM rollouts_rollout")
        return c.fetchone()[0]


def timed(fn, repeat: int) -> list[float]:
    fn()  # warm: the first call pays for plan caching and cold pages
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20)[-1] if len(times) >= 2 else times[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    setup_django(URL)
    from django.contrib.auth.models import User
    from django.core.paginator import Paginator
    from django.test import Client
    from django.urls import reverse

    from apps.core.pagination import in_order
    from apps.jobs.models import Job
    from apps.rollouts.browse import SORTS, RolloutFilterForm
    from apps.rollouts.models import RolloutTokens

    if rollout_count() != args.rollouts // JOBS * JOBS or not RolloutTokens.objects.exists():
        fill(args.rollouts)
    job = Job.objects.order_by("pk")[JOBS // 2].pk
    user, _ = User.objects.get_or_create(username="bench", defaults={"is_superuser": True, "is_staff": True})
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    url = reverse("rollout_list")

    def cursor_at(params: dict, page: int) -> str | None:
        form = RolloutFilterForm(params)
        assert form.is_valid(), form.errors
        after = None
        for _ in range(page - 1):
            after = form.page(after).next_after
        return after

    cases = [
        ("first page", {}, 1),
        ("filtered: job, correct, reward >= 1, by reward", {"job": job, "correct": "yes", "reward_min": "1",
                                                            "sort": "reward"}, 1),
        ("search 'hexagon'", {"q": "hexagon"}, 1),
        ("search 'aquarium' (question)", {"q": "aquarium"}, 1),
        ("page 100", {}, 100),
        ("page 100 of the filtered", {"job": job, "correct": "yes", "reward_min": "1", "sort": "reward"}, 100),
        # The token lens: the same job with and without a filter on its rollouts' max token entropy, and its
        # rollouts sorted by it (an index range scan on (job, max_entropy, rollout)).
        ("one job", {"job": job}, 1),
        ("one job, max token entropy >= 5", {"job": job, "entropy_min": "5"}, 1),
        ("one job, by max token entropy", {"job": job, "sort": "max_entropy"}, 1),
        ("page 100 of one job by max token entropy", {"job": job, "sort": "max_entropy"}, 100),
        ("all jobs, max token entropy >= 5", {"entropy_min": "5"}, 1),
    ]
    rows = []
    for name, params, page in cases:
        after = cursor_at(params, page)
        request = {**params, **({"after": after} if after else {})}
        browser = timed(lambda r=request: _ok(client.get(url, r)), args.repeat)
        form = RolloutFilterForm(params)
        assert form.is_valid(), form.errors
        keyset = timed(lambda f=form, a=after: f.page(a).items, args.repeat)
        queryset = in_order(form.rollouts(), *SORTS[form.cleaned_data["sort"] or "newest"])

        def offset_page(qs=queryset, n=page):
            paginator = Paginator(qs, PER_PAGE)
            return list(paginator.page(min(n, paginator.num_pages)).object_list)

        offset = timed(offset_page, args.repeat)
        rows.append((name, browser, keyset, offset))
    count_times = {label: timed(lambda p=p: _ok(client.get(reverse("rollout_count"), p)), args.repeat)
                   for label, p in [("count, unfiltered", {}), ("count, filtered", cases[1][1]),
                                    ("count, search", {"q": "hexagon"})]}

    info = machine()
    print(f"\n{rollout_count():,} rollouts · {info['nproc']} × {info['cpu']} · {info['postgres'].split(' on ')[0]}")
    print(f"{args.repeat} runs each, ms. view: the whole request through Django (keyset page); keyset: its "
          "page query alone; offset: Paginator's COUNT + OFFSET page on the same queryset\n")
    print("| query | view p50 | view p95 | keyset p95 | offset p95 | offset / keyset (p95) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, browser, keyset, offset in rows:
        print(f"| {name} | {statistics.median(browser):.1f} | {p95(browser):.1f} | {p95(keyset):.1f} "
              f"| {p95(offset):.1f} | {p95(offset) / p95(keyset):.1f}× |")
    for label, times in count_times.items():
        print(f"| {label}, its own request | {statistics.median(times):.1f} | {p95(times):.1f} | | | |")


def _ok(response):
    assert response.status_code == 200, response.status_code
    return response


if __name__ == "__main__":
    main()
