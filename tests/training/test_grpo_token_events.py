"""The supervisor stores what GRPO's token capture wrote: the trainer's rollouts events, read by the job's
EventSink, land as rollouts with their token traces, exactly as the trainer computed them."""

import numpy as np
import pytest

from apps.datasets.models import ModelVersion, Prompt
from apps.jobs.models import Job
from apps.jobs.runner import JobContext
from apps.rollouts.models import RewardRecipe, Rollout
from apps.training.training import EventSink, Run
from tests.workers.test_grpo_tokens import run_trainer, tiny_path  # noqa: F401 - a fixture
from workers.tokens import TokenTrace

pytestmark = pytest.mark.django_db


def test_the_supervisor_stores_each_grpo_completion_with_its_token_trace(tmp_path, tiny_path, dataset, settings):  # noqa: F811
    settings.STORAGE_ROOT = tmp_path / "storage"
    (tmp_path / "run").mkdir()
    events = run_trainer(tmp_path / "run", tiny_path, steps_per_generation=1, max_steps=1)
    for i in range(8):  # the prompt ids the trainer's rows name
        Prompt.objects.create(pk=i + 1, dataset=dataset, question=f"What is {i} + 3?", reference_answer=str(i + 3),
                              content_hash=f"g{i}")
    model = ModelVersion.objects.create(name="tiny", uri=str(tiny_path))
    job = Job.objects.create(kind="grpo", status=Job.Status.RUNNING, params={
        "model_version": model.pk, "recipe": RewardRecipe.latest("r1-zero-math").pk})
    sink = EventSink(JobContext(job), Run(job))
    sink.apply([{"type": "rollouts", "step": step, "rows": [row]} for step, row in events])
    stored = {(r.prompt_id, r.sample_index): r for r in Rollout.objects.filter(job=job).select_related("tokens")}
    assert len(stored) == len(events) == 8
    for _, row in events:
        rollout = stored[(row["prompt_id"], row["sample_index"])]
        sent, kept = TokenTrace.from_json(row["tokens"]), rollout.tokens.trace()
        assert kept.ids.tolist() == sent.ids.tolist() and kept.entropy_kind == "tempered"
        assert np.array_equal(kept.logprobs, sent.logprobs) and np.array_equal(kept.entropy, sent.entropy)
        assert rollout.tokens.job_id == job.pk and rollout.tokens.n_tokens == rollout.completion_tokens
