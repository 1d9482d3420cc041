"""SFT and GRPO jobs through a real Celery worker: the short R1 chain, cancel, crashes, a full disk, resume."""

import os
import signal
import subprocess
from collections import Counter

import psutil
import pytest
from transformers import AutoModelForCausalLM

from apps.core.bulk import bulk_insert
from apps.datasets.models import Example, ModelVersion, Prompt
from apps.datasets.versions import freeze_version
from apps.jobs import launching
from apps.jobs.models import Job
from apps.rollouts.models import Rollout
from apps.training.dashboard import dashboard_data
from apps.training.models import Evaluation, StepMetric
from apps.training.training import Run
from tests.conftest import wait_for, wait_for_job
from workers.generation.tiny import build_tiny_model, sft_examples
from workers.synthetic import arithmetic_dataset

pytestmark = pytest.mark.django_db(transaction=True)  # the worker and the heartbeat use their own connections


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base", sft_steps=0)


@pytest.fixture
def base(tiny_path):
    return ModelVersion.objects.create(name="tiny-base", uri=str(tiny_path))


@pytest.fixture
def format_version(dataset):
    """Worked arithmetic answers in the R1-Zero format, as a frozen dataset version."""
    examples = []
    for pair in sft_examples(n=24, seed=3):
        question = pair["prompt"].split("User: ", 1)[1].rsplit(". Assistant:", 1)[0]
        examples.append(Example.objects.create(dataset=dataset, messages=[
            {"role": "user", "content": question}, {"role": "assistant", "content": pair["completion"]}]))
    return freeze_version(dataset, examples)


@pytest.fixture
def problems(dataset):
    bulk_insert(Prompt, [{"dataset_id": dataset.pk, "question": p["question"], "reference_answer": p["answer"],
                          "content_hash": f"p{i}"} for i, p in enumerate(arithmetic_dataset(16, seed=9))])
    return dataset


def sft_params(base, version, **extra):
    return {"model_version": base.pk, "dataset_version": version.pk, "format": "r1_zero", "max_steps": 4,
            "batch_size": 4, "learning_rate": 3e-3, "save_steps": 2, "stage": "cold_start", "max_length": 256} | extra


def grpo_params(model, prompts, **extra):
    return {"model_version": model.pk, "dataset": prompts.pk, "max_steps": 3, "batch_size": 8, "num_generations": 4,
            "steps_per_generation": 1, "max_completion_length": 24, "learning_rate": 1e-3, "beta": 0.04,
            "epsilon": 0.2, "save_steps": 2, "stage": "reasoning_rl"} | extra


def run_job(kind, params, timeout=240.0) -> Job:
    job = launching.launch(kind, params)
    return wait_for_job(job, timeout=timeout)


def test_sft_then_grpo_then_evaluation_through_a_worker(celery_worker, base, format_version, problems):
    sft = run_job("sft", sft_params(base, format_version))
    assert sft.status == "succeeded", sft.error
    cold = ModelVersion.objects.get(pk=sft.result["model_version"])
    assert (cold.parent, cold.produced_by, cold.stage, cold.step) == (base, sft, "cold_start", 4)
    checkpoints = ModelVersion.objects.filter(produced_by=sft, config__checkpoint=True).order_by("step")
    assert [c.step for c in checkpoints] == [2, 4]
    assert [m.step for m in StepMetric.objects.filter(job=sft)] == [1, 2, 3, 4]
    assert all("loss" in m.metrics for m in StepMetric.objects.filter(job=sft))
    AutoModelForCausalLM.from_pretrained(cold.uri)  # a plain transformers folder

    grpo = run_job("grpo", grpo_params(cold, problems, eval_dataset=problems.pk, eval_samples=2))
    assert grpo.status == "succeeded", grpo.error
    rollouts = list(Rollout.objects.filter(job=grpo))
    # Every completion of every step: 3 steps x 8 completions, each once.
    assert len(rollouts) == 3 * 8
    assert Counter(r.step for r in rollouts) == {1: 8, 2: 8, 3: 8}
    assert len({(r.step, r.group, r.sample_index) for r in rollouts}) == 24
    assert {r.sample_index for r in rollouts} == {0, 1, 2, 3} and {r.group for r in rollouts} == {0, 1}
    for r in rollouts:
        assert set(r.rewards) == {"math_accuracy", "format"} and r.advantage is not None
        assert r.model_version_id == cold.pk and r.completion_tokens is not None
        assert r.prompt.dataset_id == problems.pk
    # Group-relative advantages: within a group they sum to zero.
    groups: dict = {}
    for r in rollouts:
        groups.setdefault((r.step, r.group), []).append(r.advantage)
    assert all(abs(sum(a)) < 1e-3 for a in groups.values())
    metrics = {m.step: m.metrics for m in StepMetric.objects.filter(job=grpo)}
    assert sorted(metrics) == [1, 2, 3]
    for figures in metrics.values():
        for name in ("reward", "reward_std", "rewards/math_accuracy/mean", "rewards/format/mean",
                     "completions/mean_length", "completions/clipped_ratio", "kl", "loss", "entropy"):
            assert name in figures, name
    rl = ModelVersion.objects.get(pk=grpo.result["model_version"])
    assert (rl.parent, rl.stage) == (cold, "reasoning_rl")

    # Each checkpoint (step 2) and the final model (step 3) got an evaluation job of its own, drawn by step.
    checkpoint_evals = Job.objects.filter(kind="evaluate", params__model_version__in=list(
        ModelVersion.objects.filter(produced_by=grpo).values_list("pk", flat=True)))
    assert checkpoint_evals.count() == 2
    for job in checkpoint_evals:
        assert wait_for_job(job, timeout=240).status == "succeeded", job.error
    drawn = {s["key"]: s["values"] for s in dashboard_data(grpo)["series"]}
    steps = dashboard_data(grpo)["x"]["values"]
    assert [x for x, v in zip(steps, drawn["eval/pass@1"], strict=True) if v is not None] == [2, 3]

    evaluation = run_job("evaluate", {"model_version": rl.pk, "dataset": problems.pk, "n": 2, "pass_k": 2,
                                      "max_tokens": 24, "limit": 4})
    assert evaluation.status == "succeeded", evaluation.error
    assert 0.0 <= Evaluation.objects.get(job=evaluation).metrics["pass@1"] <= 1.0


def trainer_processes(job: Job) -> list[psutil.Process]:
    launcher = psutil.Process(job.result["training_pid"])
    return [launcher, *launcher.children(recursive=True)]


def running_with_metrics(job: Job, min_step: int = 1, timeout: float = 120.0) -> Job:
    wait_for(lambda: StepMetric.objects.filter(job=job, step__gte=min_step).exists(), timeout=timeout,
             message=f"job {job.pk} to log step {min_step}")
    job.refresh_from_db()
    return job


def test_cancel_stops_every_training_process(celery_worker, base, problems):
    job = running_with_metrics(launching.launch("grpo", grpo_params(base, problems, max_steps=500, save_steps=0)))
    processes = trainer_processes(job)
    assert len(processes) >= 2  # the accelerate launcher and the training rank
    assert job.request_cancel()
    assert wait_for_job(job, timeout=60).status == "cancelled"
    _, alive = psutil.wait_procs(processes, timeout=10)
    assert alive == [], f"left running: {alive}"
    with pytest.raises(ProcessLookupError):
        os.killpg(job.result["training_pid"], 0)


def test_a_crashing_trainer_fails_the_job_with_its_log_tail(celery_worker, base, format_version, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "qwen3", "hidden_size": ')
    model = ModelVersion.objects.create(name="broken", uri=str(broken))
    job = run_job("sft", sft_params(model, format_version))
    assert job.status == "failed"
    assert "the training process failed: exit status" in job.error
    assert "--- last lines of its log ---" in job.error and "Traceback" in job.error
    assert "Traceback" in job.log  # the page's log tail shows it too


def test_a_trainer_killed_like_the_oom_killer_does_fails_the_job_and_says_so(celery_worker, base, problems):
    job = running_with_metrics(launching.launch("grpo", grpo_params(base, problems, max_steps=500, save_steps=0)))
    rank = next(p for p in trainer_processes(job) if "workers.training.train" in " ".join(p.cmdline())
                and "accelerate" not in " ".join(p.cmdline()))
    rank.send_signal(signal.SIGKILL)  # what the kernel's out-of-memory killer sends
    job = wait_for_job(job, timeout=60)
    assert job.status == "failed"
    assert "SIGKILL" in job.error and "out-of-memory" in job.error
    assert "--- last lines of its log ---" in job.error


def test_a_killed_worker_takes_its_trainer_down_and_the_retry_resumes_from_the_checkpoint(
        celery_worker, start_worker, base, problems):
    worker = start_worker(beat=False)
    celery_worker.stop()  # so that this worker takes the job
    job = launching.launch("grpo", grpo_params(base, problems, max_steps=30, save_steps=2))
    wait_for(lambda: ModelVersion.objects.filter(produced_by=job, step=2).exists(), timeout=120,
             message="the step-2 checkpoint")
    job.refresh_from_db()
    processes = trainer_processes(job)
    worker.kill()  # SIGKILL: the supervising job dies without cleaning up
    _, alive = psutil.wait_procs(processes, timeout=15)
    assert alive == [], "the trainer outlived its supervisor"
    start_worker()  # its beat runs the stale-job check
    assert wait_for_job(job, timeout=30).status == "failed"
    assert launching.retry(job)
    job = wait_for_job(Job.objects.get(pk=job.pk), statuses=("succeeded", "failed"), timeout=180)
    assert job.status == "succeeded", job.error
    assert "resuming from step" in job.log
    rollouts = Rollout.objects.filter(job=job)
    # Each step's completions once: those of steps redone after the checkpoint are the second attempt's.
    assert Counter(rollouts.values_list("step", flat=True)) == {step: 8 for step in range(1, 31)}
    assert sorted(StepMetric.objects.filter(job=job).values_list("step", flat=True)) == list(range(1, 31))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_while_saving_leaves_the_previous_checkpoint_usable(celery_worker, base, format_version):
    job = launching.launch("sft", sft_params(base, format_version, max_steps=6, save_steps=2), enqueue=False)
    checkpoints = Run(job).checkpoints
    checkpoints.mkdir(parents=True, exist_ok=True)
    # Room for one checkpoint of the tiny model (~4.5 MB with its optimizer state), not two.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(checkpoints)], check=True)
    try:
        launching.send_to_worker(job)
        job = wait_for_job(job, timeout=180)
        assert job.status == "failed"
        assert "No space left on device" in job.error
        saved = list(ModelVersion.objects.filter(produced_by=job))
        assert [v.step for v in saved] == [2]  # the cut-short save at step 4 is not registered
        AutoModelForCausalLM.from_pretrained(saved[0].uri)  # and the whole one before it loads
    finally:
        subprocess.run(["umount", "-l", str(checkpoints)], check=False)


def test_the_miniature_chain_runs_its_jobs_on_the_worker(celery_worker, tmp_path):
    from apps.training.miniature import MiniatureConfig, run_miniature

    config = MiniatureConfig(sft_steps=3, grpo_steps=2, heldout=4, train_prompts=16, eval_samples=2, name="mini-test")
    lines = []
    result = run_miniature(tmp_path, config, log=lines.append, timeout_s=300)
    sft, grpo = Job.objects.get(pk=result["jobs"]["sft"]), Job.objects.get(pk=result["jobs"]["grpo"])
    evaluations = list(Job.objects.filter(pk__in=result["jobs"]["evaluations"]).order_by("pk"))
    assert (sft.kind, grpo.kind, [j.kind for j in evaluations]) == ("sft", "grpo", ["evaluate"] * 4)
    assert Rollout.objects.filter(job=grpo).count() == 2 * 64  # the GRPO batch: 64 completions a step
    assert len({j.params["dataset"] for j in evaluations}) == 1  # the same held-out prompts
    assert [j.params["model_version"] for j in evaluations] == [grpo.params["model_version"]] * 2 + [
        grpo.result["model_version"]] * 2
    assert set(result["pass@1"]) == {1.0, 0.6}
    assert all(0 <= p <= 1 for pair in result["pass@1"].values() for p in pair)
    assert [point["step"] for point in result["curves"]] == [1, 2]
    assert all(0 <= point["reflection"] <= 1 for point in result["curves"])  # the share of a step's completions
    assert any("GRPO: done" in line for line in lines)


def test_a_grpo_job_that_trains_no_step_fails_saying_why(base, problems):
    from apps.jobs.runner import execute

    job = launching.launch("grpo", grpo_params(base, problems, max_steps=2), enqueue=False)
    keep = Prompt.objects.filter(dataset=problems).first()
    Prompt.objects.filter(dataset=problems).exclude(pk=keep.pk).delete()  # the dataset shrank after the launch
    execute(job.pk, worker="test")
    job.refresh_from_db()
    assert job.status == "failed"
    assert "the trainer ran 0 of 2 steps: it found no whole batch in the 1 training rows" in job.error
    assert not ModelVersion.objects.filter(produced_by=job).exists()  # no "final" model of an untrained run
