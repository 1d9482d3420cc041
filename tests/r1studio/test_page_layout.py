"""Every main page in headless Chromium at a desktop width (1400 px) and a phone width (390 px):
the document never scrolls sideways (wide tables scroll inside themselves), no page throws a
JavaScript error (the `page` fixture), and no request the pages make fails (the favicon included).

The data are made to be awkward: long unbroken tokens in questions, labels, URIs and descriptions,
nested audit details. A full-page screenshot of each page at each width goes to
test-artifacts/pages/ for a person to look at.
"""

import pytest
from django.contrib.auth.models import User

from apps.api.tokens import issue_token
from apps.core.audit import record
from apps.curation import queues
from apps.datasets.models import BulkAction, Dataset, Example, ModelVersion
from apps.datasets.versions import freeze_version
from apps.jobs import launching
from apps.jobs.models import Job
from apps.rollouts.models import RewardRecipe
from apps.training.models import Evaluation, StepMetric
from tests.rollout_factory import add_prompt, add_rollouts, solved

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = {"desktop": 1400, "phone": 390}
LONG_NUMBER = "9" * 160  # a model's or a user's long unbroken token
LONG_PATH = "/checkpoints/" + "run-2026-11-21-grpo-tiny-" + "x" * 90 + "/checkpoint-1200"


@pytest.fixture
def site(dataset, users):
    """A little of everything, returning the URLs of the pages to look at."""
    admin = users["admin"]
    base = ModelVersion.objects.create(name="tiny-base", uri="/models/tiny", backend="transformers")
    tuned = ModelVersion.objects.create(name="tiny-r1-zero-step-1200", uri=LONG_PATH, stage="r1_zero", parent=base,
                                        step=1200)
    recipe = RewardRecipe.latest("r1-zero-math")
    prompts = [add_prompt(dataset, f"Natalia sold clips to {i} friends in April. How many clips? ({i})", str(i))
               for i in range(6)]
    prompts.append(add_prompt(dataset, f"What is {LONG_NUMBER} + 1?", "1" + "0" * 160))
    Dataset.objects.create(name="candidates", description="Accepted rollouts, see https://example.com/" + "a" * 150)

    generate = launching.launch("generate", {"dataset": dataset.pk, "model_version": base.pk, "recipe": recipe.pk,
                                             "n": 4}, user=admin, enqueue=False,
                                label="sample-the-base-model-" + "abcdefghij" * 8)
    Job.objects.filter(pk=generate.pk).update(status="succeeded", progress_done=28, progress_total=28,
                                              result={"rollouts": 28, "by_finish": {"stop": 20, "length": 8}})
    for prompt in prompts:
        add_rollouts(generate, prompt, [solved(prompt.reference_answer), solved("0", "Wait, " + LONG_NUMBER),
                                        "<think>" + "no idea " * 40 + "</think>", solved(prompt.reference_answer)],
                     total_reward=[1.5, 0.5, 0.0, 1.5], is_correct=[True, False, False, True],
                     advantage=[0.87, -0.87, -0.87, 0.87],
                     rewards=[{"math_accuracy": {"value": v, "weight": 1.0,
                                                 "details": {"extracted": LONG_NUMBER, "checks": {"parsed": True}}}}
                              for v in (1.0, 0.0, 0.0, 1.0)])
    grpo = Job.objects.create(kind="grpo", status="running", label="R1-Zero on tiny", created_by=admin,
                              params={"model_version": base.pk, "dataset": dataset.pk, "recipe": recipe.pk})
    for step in range(1, 6):
        StepMetric.objects.create(job=grpo, step=step, metrics={"kl": 0.01 * step, "loss": 0.5 - 0.01 * step})
    failed = Job.objects.create(kind="import_prompts", status="failed", error="line 3: question: " + LONG_NUMBER,
                                traceback="Traceback (most recent call last):\n  ...\nValueError: " + LONG_NUMBER,
                                params={"dataset": dataset.pk, "path": "/tmp/" + "u" * 120 + ".jsonl"})
    record(None, "job.launch", failed, via="cli", kind="import_prompts")

    examples = []
    for i, prompt in enumerate(prompts):
        example = Example(dataset=dataset, prompt=prompt, source="rollout",
                          messages=Example.chat(prompt.question, f"<think>{LONG_NUMBER}</think>\n\n{i}"),
                          provenance={"rollout": i, "job": generate.pk, "model_version": base.pk})
        example.save()
        examples.append(example)
    v1 = freeze_version(dataset, examples[:3], user=admin, note="first cut " + LONG_NUMBER)
    v2 = freeze_version(dataset, examples, user=admin, note="all of them")
    sft = launching.launch("sft", {"model_version": base.pk, "dataset_version": v2.pk, "output_name": "tiny-sft"},
                           user=admin, enqueue=False)

    for version, corrects in ((base, [1, 2, 0, 4, 3, 1, 0]), (tuned, [3, 4, 2, 4, 4, 2, 1])):
        job = Job.objects.create(kind="evaluate", status="succeeded", params={"model_version": version.pk})
        per_prompt = {str(p.pk): {"correct": c, "n": 4, "majority_correct": c > 2, "majority_votes": c}
                      for p, c in zip(prompts, corrects, strict=True)}
        Evaluation.objects.create(model_version=version, dataset=dataset, job=job, k=4, temperature=0.6, top_p=0.95,
                                  per_prompt=per_prompt, metrics={"prompts": 7, "pass@1": sum(corrects) / 28,
                                                                  "cons@4": sum(c > 2 for c in corrects) / 7})
    evaluations = list(Evaluation.objects.order_by("pk"))

    annotator = User.objects.get(username="annotator_user")
    queue = queues.build_queue(name="cold start " + "q" * 60, annotators=[annotator], overlap=1,
                               source_filter={"job": str(generate.pk), "sort": "oldest"},
                               target_dataset=Dataset.objects.get(name="candidates"), limit=6, user=admin)
    bulk = BulkAction.objects.create(user=admin, dataset=Dataset.objects.get(name="candidates"), status="done",
                                     filter_params={"correct": "yes", "job": str(generate.pk)}, matched=14, created=14)
    record(admin, "version.export", v2, via="api", fmt="messages")
    record(admin, "annotation.edit", None, item=3, changes={"verdict": "edit", "text": LONG_NUMBER, "tags": ["a", "b"]})
    issue_token(admin, "trainer-" + "t" * 60)

    rollout = generate.rollouts.order_by("pk").first()
    return {
        "home": "/",
        "datasets": "/datasets/",
        "dataset": f"/datasets/{dataset.name}/",
        "import": f"/datasets/{dataset.name}/import",
        "versions": f"/datasets/{dataset.name}/versions/",
        "version": f"/versions/{v2.pk}/",
        "version-diff": f"/versions/diff?a={v1.pk}&b={v2.pk}",
        "compose": f"/datasets/{dataset.name}/compose",
        "rollouts": "/rollouts/",
        "rollout": f"/rollouts/{rollout.pk}/",
        "group": f"/rollouts/{rollout.pk}/group",
        "ingest": "/rollouts/ingest",
        "bulk-preview": f"/rollouts/bulk?job={generate.pk}&correct=yes",
        "bulk-list": "/bulk/",
        "bulk": f"/bulk/{bulk.pk}/",
        "review": "/review/",
        "review-new": "/review/new",
        "queue": f"/review/{queue.pk}/overview",
        "jobs": "/jobs/",
        "job-generate": f"/jobs/{generate.pk}/",
        "job-grpo": f"/jobs/{grpo.pk}/",
        "job-failed": f"/jobs/{failed.pk}/",
        "job-sft": f"/jobs/{sft.pk}/",
        "launch-grpo": "/jobs/new/grpo/",
        "dashboard": f"/jobs/{generate.pk}/dashboard",
        "models": "/models/",
        "pipeline": f"/models/{base.pk}/pipeline",
        "evaluations": "/evaluations/",
        "compare": f"/evaluations/compare?a={evaluations[0].pk}&b={evaluations[1].pk}",
        "audit": "/audit/",
        "tokens": "/api/tokens",
        "not-found": "/no/such/page/",
    }


def test_no_page_scrolls_sideways_at_desktop_or_phone_width(page, site, artifacts):
    folder = artifacts / "pages"
    folder.mkdir(exist_ok=True)
    failed_requests = []
    page.on("response", lambda r: r.status >= 400 and not r.url.endswith(site["not-found"])
            and failed_requests.append(f"{r.status} {r.url}"))
    overflowing = []
    for width_name, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 900})
        for name, url in site.items():
            response = page.goto(url)
            assert response.status == (404 if name == "not-found" else 200), (url, response.status)
            page.wait_for_load_state("networkidle")  # htmx loads (counts, health, previews) have landed
            page.screenshot(path=folder / f"{name}-{width_name}.png", full_page=True)
            scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            if scroll_width > inner_width:
                overflowing.append(f"{url} at {width} px: {scroll_width} px wide; widest: {widest(page, inner_width)}")
    assert not overflowing, "\n".join(overflowing)
    assert not failed_requests, "\n".join(failed_requests)  # no 404 for the favicon or anything else a page asked for
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    served = page.request.get(icon)
    assert served.status == 200 and served.headers["content-type"].startswith("image/svg+xml")


def widest(page, inner_width) -> list[str]:
    """The elements reaching past the viewport, deepest first: what to fix."""
    return page.evaluate("""(limit) => [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > limit + 0.5)
        .filter(e => ![...e.children].some(c => c.getBoundingClientRect().right > limit + 0.5))
        .slice(0, 5).map(e => e.tagName.toLowerCase()
                          + (e.className ? '.' + String(e.className).replace(/ /g, '.') : '')
                          + ' ' + Math.round(e.getBoundingClientRect().right))""", inner_width)


def test_the_layout_check_sees_a_page_that_scrolls_sideways(page):
    """The check above is not vacuous: a page made wider than the phone is caught, and named."""
    page.set_viewport_size({"width": 390, "height": 900})
    page.goto("/")
    page.evaluate("document.querySelector('main').style.minWidth = '900px'")
    scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll_width > inner_width and widest(page, inner_width)
