"""SFT and GRPO jobs: prepare the run, start TRL under `accelerate launch`, supervise it.

The training runs in its own process group, started through `accelerate launch`
(one CPU process here; one GPU, all GPUs with DeepSpeed or FSDP, or several
machines elsewhere). This job body writes the data and a spec into the run
folder, then polls: it reads the events the trainer appends (metrics,
rollouts, checkpoints; workers.training.events) into the database, copies the
trainer's log into the job's log, and honours cancel by killing the whole
process tree. A retried job resumes from the newest whole checkpoint.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from django.conf import settings
from django.db import transaction

from apps.datasets.models import DatasetVersion, ModelVersion, Prompt
from apps.jobs import launching
from apps.jobs.kinds import job_kind
from apps.jobs.runner import JobCancelled
from apps.rollouts.generation import template_text
from apps.rollouts.judging import judge_settings
from apps.rollouts.models import RewardRecipe, Rollout
from apps.rollouts.rows import rollout_row
from apps.rollouts.tokens import TOKENS_KEY, write_rollouts
from apps.training.forms import CPU_PRESETS, GRPOParamsForm, SFTParamsForm, sft_steps, training_processes
from apps.training.models import StepMetric
from workers.generation.templates import render
from workers.tokens import TokenTrace
from workers.training.events import Event, EventReader, RolloutRow, archive_events
from workers.training.formats import sft_row
from workers.training.spec import GRPOSpec, LoraSpec, SFTSpec, TrainSpec, default
from workers.training.train import latest_checkpoint

POLL_SECONDS = 0.5
KILL_GRACE_SECONDS = 10.0
LOG_TAIL_ON_FAILURE = 40  # lines of the trainer's log in the job's error
LOW_DISK_BYTES = 64 * 1024**2  # a failed run with less free than this ran out of disk, most likely
ACCELERATE_CONFIG_DIR = Path(__file__).resolve().parents[2] / "workers" / "training" / "accelerate"


class TrainingFailed(RuntimeError):
    pass


class Run:
    """Where one job's training lives: STORAGE_ROOT/runs/job-<id>/."""

    def __init__(self, job):
        self.dir = Path(settings.STORAGE_ROOT) / "runs" / f"job-{job.pk}"
        self.checkpoints = self.dir / "checkpoints"
        self.final = self.dir / "final"
        self.spec = self.dir / "spec.json"
        self.data = self.dir / "data.jsonl"
        self.log = self.dir / "train.log"


def training_queue(params: dict) -> str:
    """gpu for any accelerate config but the CPU one, or for a model set to run on CUDA."""
    return "gpu" if params.get("accelerate_config", "cpu") != "cpu" else ModelVersion.queue_for(params)


@job_kind("grpo", "GRPO", GRPOParamsForm, queue=training_queue, presets={"cpu": CPU_PRESETS["grpo"]})
@job_kind("sft", "Supervised fine-tuning", SFTParamsForm, queue=training_queue, presets={"cpu": CPU_PRESETS["sft"]})
def run_training(ctx) -> dict:
    job, params = ctx.job, ctx.params
    run = Run(job)
    if job.attempts <= 1:  # a first attempt: anything here is stale (a database reset reuses job ids)
        shutil.rmtree(run.dir, ignore_errors=True)
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    sink = EventSink(ctx, run)
    resume = _resume_point(ctx, run, sink)
    rows = _write_data(job.kind, params, run.data)
    spec = _spec(job, params, run, rows, resume)
    run.spec.write_text(spec.to_json())
    ctx.progress(resume[0] if resume else 0, spec.max_steps)
    ctx.log(f"{rows} training rows, {spec.max_steps} steps; "
            + (f"resuming from step {resume[0]}" if resume else "starting from the model's weights"))
    process = _launch(run, params["accelerate_config"])
    ctx.report(training_pid=process.pid, run_dir=str(run.dir))
    log_offset = 0
    try:
        while True:
            exit_code = process.poll()
            sink.apply(sink.reader.read())
            log_offset = _copy_log(ctx, run.log, log_offset)
            if exit_code is not None:
                break
            if ctx.cancel_event.is_set():
                ctx.log("cancel requested: stopping the training processes")
                kill_tree(process)
                raise JobCancelled()
            time.sleep(POLL_SECONDS)
    except BaseException:
        kill_tree(process)  # never leave a trainer behind, whatever went wrong here
        raise
    if exit_code != 0:
        raise TrainingFailed(_failure_message(exit_code, run))
    if sink.trained_nothing:
        raise TrainingFailed(f"the trainer ran 0 of {spec.max_steps} steps: it found no whole batch in the "
                             f"{rows} training rows (see the log)")
    if sink.final is None:
        raise TrainingFailed("the training process exited without saving the final model")
    return {"model_version": sink.final.pk, "final_step": sink.final.step, "checkpoints": sink.checkpoints}


def _launch(run: Run, config_name: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ACCELERATE_CONFIG_DIR / f"{config_name}.yaml"), *_launch_overrides(config_name),
               "-m", "workers.training.train", str(run.spec)]
    env = {**os.environ, "R1_SUPERVISOR_PID": str(os.getpid()), "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": str(settings.TRAINING_CPU_THREADS), "TOKENIZERS_PARALLELISM": "false"}
    with open(run.log, "ab") as log:
        # Its own session: cancel signals the whole group (launcher, ranks, their helpers).
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd=settings.BASE_DIR)


def _launch_overrides(config_name: str) -> list[str]:
    if config_name in ("cpu", "single_gpu"):
        return []
    if config_name != "multi_node":
        return ["--num_processes", str(training_processes(config_name))]
    node = settings.TRAINING_NODE
    return ["--num_processes", str(training_processes(config_name) * node["machines"]),
            "--num_machines", str(node["machines"]), "--machine_rank", str(node["rank"]),
            "--main_process_ip", node["main_ip"], "--main_process_port", str(node["main_port"])]


def kill_tree(process: subprocess.Popen) -> None:
    """SIGTERM the trainer's process group and every descendant, SIGKILL what is left after a grace period."""
    if process.poll() is not None and not _group_alive(process.pid):
        return
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        for child in descendants:
            try:
                child.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(descendants, timeout=KILL_GRACE_SECONDS if sig == signal.SIGTERM else 5)
        try:
            process.wait(timeout=KILL_GRACE_SECONDS if sig == signal.SIGTERM else 5)
        except subprocess.TimeoutExpired:
            continue
        if not alive and not _group_alive(process.pid):
            return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _copy_log(ctx, path: Path, offset: int) -> int:
    """New complete lines of the trainer's log into the job's log (progress-bar redraws left out)."""
    if not path.exists():
        return offset
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    end = chunk.rfind(b"\n") + 1
    for line in chunk[:end].decode("utf-8", "replace").splitlines():
        line = line.rsplit("\r", 1)[-1].rstrip()
        if line:
            ctx.log(line[:2000])
    return offset + end


def _failure_message(exit_code: int, run: Run) -> str:
    lines = run.log.read_text("utf-8", "replace").splitlines() if run.log.exists() else []
    lines = [line.rsplit("\r", 1)[-1] for line in lines]
    tail = "\n".join(lines[-LOG_TAIL_ON_FAILURE:])
    how = f"killed by signal {-exit_code}" if exit_code < 0 else f"exit status {exit_code}"
    if exit_code == -signal.SIGKILL or "SIGKILL" in tail:
        how += " (SIGKILL: the kernel's out-of-memory killer sends it when memory runs out)"
    # The launcher's own CalledProcessError comes last; the trainer's error is the one that says why.
    errors = [line for line in lines if _ERROR_LINE.match(line) and not line.startswith("subprocess.")]
    if errors:
        how += f"; {errors[-1][:500]}"
    free = shutil.disk_usage(run.checkpoints).free if run.checkpoints.exists() else None
    if free is not None and free < LOW_DISK_BYTES:
        how = f"No space left on device: {free // 1024} KiB free where checkpoints go ({run.checkpoints}); {how}"
    return f"the training process failed: {how}\n--- last lines of its log ---\n{tail}"


_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b")


def _resume_point(ctx, run: Run, sink: "EventSink") -> tuple[int, Path] | None:
    """Before a retry: store whatever the last attempt wrote, then forget what came after its last
    whole checkpoint (those steps are trained again), so the stored rollouts and curves are the
    ones of the weights the run goes on from."""
    if ctx.job.attempts <= 1:
        return None
    sink.apply(sink.reader.read())
    resume = latest_checkpoint(run.checkpoints)
    step = resume[0] if resume else 0
    with transaction.atomic():
        Rollout.objects.filter(job=ctx.job, step__gt=step).delete()
        StepMetric.objects.filter(job=ctx.job, step__gt=step).delete()
    archive_events(run.dir, ctx.job.attempts - 1)
    sink.reader = EventReader(run.dir)
    return resume


def _write_data(kind: str, params: dict, path: Path) -> int:
    rows = 0
    with open(path, "w", encoding="utf-8") as f:
        for row in (_sft_rows(params) if kind == "sft" else _grpo_rows(params)):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            rows += 1
    if not rows:
        raise TrainingFailed("there is nothing to train on: the dataset is empty")
    return rows


def _sft_rows(params: dict):
    version = DatasetVersion.objects.get(pk=params["dataset_version"])
    for example in version.ordered_examples():
        yield sft_row(example.messages, params["format"])


def _grpo_rows(params: dict):
    template = template_text(params["template"])
    prompts = Prompt.objects.filter(dataset_id=params["dataset"]).order_by("id")[: params.get("limit") or None]
    for prompt in prompts.iterator(chunk_size=2000):
        yield {
            "prompt": render(template, prompt.question),
            "prompt_id": prompt.pk,
            "question": prompt.question,
            "reference": prompt.reference_answer,
            "tests": json.dumps(prompt.tests or []),
            "domain": prompt.domain,
            "language": prompt.language,
        }


def _spec(job, params: dict, run: Run, rows: int, resume) -> TrainSpec:
    """The job's parameters (validated by its form) as the trainer's typed spec."""
    model = ModelVersion.objects.get(pk=params["model_version"])
    processes = training_processes(params["accelerate_config"])
    sft = grpo = None
    if job.kind == "sft":
        sft = SFTSpec(format=params["format"], max_length=params["max_length"], epochs=params["epochs"])
        max_steps = params.get("max_steps") or sft_steps(rows, params["epochs"], params["batch_size"])
    else:
        knobs = ("num_generations", "steps_per_generation", "max_completion_length", "temperature", "top_p", "beta",
                 "epsilon", "loss_type", "use_vllm", "stop_format_at", "stop_falling_steps")
        recipe = RewardRecipe.objects.get(pk=params["recipe"]).spec
        grpo = GRPOSpec(recipe=recipe, **{k: params[k] for k in knobs}, judge=judge_settings(recipe),
                        capture_tokens=params.get("capture_tokens", default(GRPOSpec, "capture_tokens")))
        max_steps = params["max_steps"]
    return TrainSpec(
        kind=job.kind, model_path=model.uri, data_path=str(run.data), run_dir=str(run.dir),
        checkpoint_dir=str(run.checkpoints), final_dir=str(run.final), max_steps=max_steps,
        learning_rate=params["learning_rate"], per_device_batch_size=params["batch_size"] // processes,
        processes=processes, lr_scheduler=params["lr_scheduler"], warmup_steps=params["warmup_steps"],
        save_steps=params["save_steps"], seed=params["seed"], use_cpu=params["accelerate_config"] == "cpu",
        resume_from=str(resume[1]) if resume else None,
        lora=LoraSpec(r=params["lora_r"], alpha=params["lora_alpha"]) if params.get("use_lora") else None,
        sft=sft, grpo=grpo,
    )


class EventSink:
    """Writes what the trainer reports to the database; every write is idempotent (a retry reads again)."""

    def __init__(self, ctx, run: Run):
        self.ctx = ctx
        self.job = ctx.job
        self.params = ctx.params
        self.reader = EventReader(run.dir)
        self.final: ModelVersion | None = None
        self.checkpoints = 0
        self.trained_nothing = False
        self.judge_counts: dict[int, dict] = {}  # process rank → its running totals
        self.input_model = ModelVersion.objects.get(pk=self.params["model_version"])

    def apply(self, events: list[Event]) -> None:
        metrics: dict[int, dict] = {}
        rollouts: list[dict] = []
        for event in events:
            kind = event["type"]
            if kind == "metrics":
                metrics.setdefault(event["step"], {}).update(event["metrics"])
                self.ctx.progress(event["step"], event.get("max_steps"))
            elif kind == "rollouts":
                rollouts += [self._rollout(event["step"], row) for row in event["rows"]]
            elif kind == "checkpoint":
                self._register(Path(event["path"]), event["step"], final=False)
            elif kind == "final" and event["step"] == 0:  # TRL stops at once when its sampler yields no batch
                self.trained_nothing = True
            elif kind == "final":
                self.final = self._register(Path(event["path"]), event["step"], final=True)
            elif kind == "summary":
                self.ctx.report(**{k: round(v, 4) for k, v in event["metrics"].items()})
            elif kind == "stopped":
                self.ctx.log(f"step {event['step']}: {event['reason']}")
                self.ctx.report(stopped_by_rule=event["reason"], stopped_at_step=event["step"])
            elif kind == "judge":
                self.judge_counts[event["rank"]] = event["counts"]
                self.ctx.report(**{key: sum(c[key] for c in self.judge_counts.values()) for key in event["counts"]})
        if rollouts:
            write_rollouts(rollouts)
        if metrics:
            self._store_metrics(metrics)

    def _store_metrics(self, metrics: dict[int, dict]) -> None:
        existing = {m.step: m for m in StepMetric.objects.filter(job=self.job, step__in=list(metrics))}
        for step, figures in metrics.items():
            if step in existing:
                existing[step].metrics |= figures
        StepMetric.objects.bulk_update(existing.values(), ["metrics"])
        StepMetric.objects.bulk_create(
            [StepMetric(job=self.job, step=step, metrics=figures) for step, figures in metrics.items()
             if step not in existing],
            ignore_conflicts=True,
        )
        latest = metrics[max(metrics)]
        self.ctx.report(latest_metrics={k: round(v, 4) for k, v in latest.items()})

    def _rollout(self, step: int, row: RolloutRow) -> dict:
        return rollout_row(
            job_id=self.job.pk, prompt_id=row["prompt_id"], completion=row["completion"], scored=row["scored"],
            model_version_id=self.input_model.pk, step=step, group=row["group"], sample_index=row["sample_index"],
            prompt_text=row["prompt_text"], prompt_tokens=row["prompt_tokens"],
            completion_tokens=row["completion_tokens"], finish_reason=row["finish_reason"],
            advantage=row["advantage"], reward_recipe_id=self.params["recipe"],
        ) | {TOKENS_KEY: TokenTrace.from_json(row["tokens"]) if row.get("tokens") else None}

    def _register(self, path: Path, step: int, final: bool) -> ModelVersion:
        base = self.params.get("output_name") or f"{self.input_model.name}-{self.job.kind}-job{self.job.pk}"
        version, created = ModelVersion.objects.get_or_create(
            name=base if final else f"{base}@step{step}",
            defaults={
                "uri": str(path), "backend": "transformers", "stage": self.params["stage"],
                "parent": self.input_model, "produced_by": self.job, "step": step,
                "config": {"checkpoint": not final, "lora_adapter": bool(self.params.get("use_lora")) and not final},
            },
        )
        if created and not final:
            self.checkpoints += 1
            self.ctx.log(f"checkpoint at step {step} registered as {version.name}")
        if created and self.params.get("eval_dataset") and not (final and self._checkpoint_at(step)):
            self._evaluate(version)
        return version

    def _checkpoint_at(self, step: int) -> bool:
        """Whether a checkpoint of the same step was registered (the trainer saves one at the last step too)."""
        return ModelVersion.objects.filter(produced_by=self.job, step=step, config__checkpoint=True).exists()

    def _evaluate(self, version: ModelVersion) -> None:
        """An evaluation job of its own for a new checkpoint: it waits for a worker, not for the training."""
        params = self.params
        evaluation = launching.launch("evaluate", {
            "model_version": version.pk, "dataset": params["eval_dataset"], "n": params["eval_samples"],
            "pass_k": params["eval_samples"], "temperature": 0.6, "top_p": 0.95, "template": params["template"],
            "recipe": params["recipe"], "max_tokens": params["max_completion_length"], "seed": params["seed"],
        }, user=self.job.created_by, label=f"{version.name}: held-out evaluation", via="job")
        self.ctx.log(f"evaluation of {version.name} queued as job #{evaluation.pk}")
