"""The training process: `accelerate launch … -m workers.training.train <run folder>/spec.json`.

The supervising job (apps.training.training) writes the spec and the data,
starts this under `accelerate launch` and tails the event files it writes.
TRL does the training; this module only builds its trainer from the spec and
reports: metrics every step, every GRPO completion with its rewards and
advantage, each checkpoint once it is completely on disk. No Django here.
"""

import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import torch

from workers.tokens import TokenBytes, TokenTrace
from workers.training.events import EventWriter, RolloutRow, event_file
from workers.training.health import StopRule, step_from_trl_logs
from workers.training.spec import TrainSpec

CHECKPOINT_MARKER = "r1studio-checkpoint.json"  # written only once a checkpoint is whole


def main(argv: list[str]) -> None:
    spec = TrainSpec.from_json(Path(argv[0]).read_text())
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    _exit_with_supervisor()
    from accelerate import PartialState

    state = PartialState()
    events = EventWriter(event_file(spec.run_dir, state.process_index))
    trainer = build_sft(spec, events) if spec.kind == "sft" else build_grpo(spec, events)
    trainer.add_callback(_event_callback(events, spec))
    trainer.train(resume_from_checkpoint=spec.resume_from)
    final_dir = save_final(trainer, spec)
    if state.is_main_process:
        events.write("final", step=trainer.state.global_step, path=str(final_dir))
    events.close()


def _exit_with_supervisor() -> None:
    """Kill this process group when the supervising job's process dies (a worker killed with -9,
    say): a training run nobody watches would hold the GPU and write events nobody reads."""
    pid = int(os.environ.get("R1_SUPERVISOR_PID") or 0)
    if not pid:
        return

    def watch():
        while True:
            time.sleep(1.0)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def _common_args(spec: TrainSpec) -> dict:
    on_gpu = torch.cuda.is_available() and not spec.use_cpu
    return dict(
        output_dir=spec.checkpoint_dir,
        max_steps=spec.max_steps,
        per_device_train_batch_size=spec.per_device_batch_size,
        learning_rate=spec.learning_rate,
        lr_scheduler_type=spec.lr_scheduler,
        warmup_steps=spec.warmup_steps,
        logging_steps=1,  # every step's metrics: the curves are per step
        save_strategy="steps" if spec.save_steps else "no",
        save_steps=spec.save_steps or 500,
        seed=spec.seed,
        report_to="none",
        disable_tqdm=True,
        # The CPU settings ML-NOTES measured: without bf16=False it runs bf16 autocast, 4x slower,
        # and TRL turns activation checkpointing on by default (the tiny and small models need none).
        use_cpu=not on_gpu,
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        activation_checkpointing=False,
        dataloader_pin_memory=on_gpu,
    )


def _peft_config(spec: TrainSpec):
    if not spec.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(r=spec.lora.r, lora_alpha=spec.lora.alpha, lora_dropout=spec.lora.dropout,
                      target_modules="all-linear", task_type="CAUSAL_LM")


def _read_jsonl(path: str):
    from datasets import Dataset

    with open(path, encoding="utf-8") as f:
        return Dataset.from_list([json.loads(line) for line in f if line.strip()])


def _tokenizer(path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_sft(spec: TrainSpec, events: EventWriter):
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(**_common_args(spec), max_length=spec.sft.max_length,
                     assistant_only_loss=spec.sft.format in ("chat", "cold_start"),
                     num_train_epochs=spec.sft.epochs)
    return SFTTrainer(model=spec.model_path, args=args, train_dataset=_read_jsonl(spec.data_path),
                      processing_class=_tokenizer(spec.model_path), peft_config=_peft_config(spec))


def build_grpo(spec: TrainSpec, events: EventWriter):
    from trl import GRPOConfig, GRPOTrainer

    from workers.rewards.judge import MemoryCache, make_judge
    from workers.rewards.pool import ScoringPool
    from workers.training.rewards import RecipeRewards

    class RecordingGRPOTrainer(GRPOTrainer):
        """Writes every completion it scores to the event file: step, group, sample, rewards, advantage, and
        (grpo.capture_tokens) each token's log-probability and entropy as TRL computed them, never computed twice:

        - When TRL computes old_per_token_logps while scoring the batch (the samples are used over several
          optimizer steps, or vLLM generated them), that forward pass is asked for the entropies too (the fused
          LM head computes them anyway) and the rows are written at once.
        - Otherwise TRL's loss on the same, not yet updated, policy gives the log-probabilities (the ones it
          takes as the old ones) and the entropies: each completion's row waits, marked by its place in the
          batch (a tensor that TRL shuffles and splits with the rest), until the loss has seen it, and is
          written then; rows the loss never saw (a loss outside this path) go without tokens at the next batch.
        """

        _capture_generation = False  # the next forward pass of the policy while scoring is TRL's old log-probs
        _generation_logps = None  # (log-probs, entropies) that pass gave
        _loss_rows = None  # the batch places of the completions the loss is computing
        _pending: "_PendingRows | None" = None

        def _generate_and_score_completions(self, inputs):
            recording = self.model.training and grpo.record_rollouts
            self._flush_pending()
            generate_every = self.args.steps_per_generation * self.num_iterations
            self._capture_generation = recording and grpo.capture_tokens and (
                self.args.gradient_accumulation_steps % generate_every != 0
                or (self.use_vllm and self.vllm_importance_sampling_correction))
            self._generation_logps = None
            try:
                output = super()._generate_and_score_completions(inputs)
            finally:
                self._capture_generation = False
            if judge is not None:  # this process's running totals; the job adds up the processes'
                events.write("judge", rank=self.accelerator.process_index, counts=judge.counts.figures())
            if recording:
                rows = rollout_rows(self, inputs, output, rewards)
                step = self.state.global_step + 1
                if not grpo.capture_tokens:
                    events.write("rollouts", step=step, rows=rows)
                elif self._generation_logps is not None:
                    add_token_traces(rows, output, *self._generation_logps, range(len(rows)), token_bytes)
                    events.write("rollouts", step=step, rows=rows)
                else:
                    self._pending = _PendingRows(step, rows, output["completion_ids"].cpu())
                    output["r1studio_row"] = torch.arange(len(rows), device=output["completion_ids"].device)
            return output

        def _get_per_token_logps_and_entropies(self, model, *args, compute_entropy=False, **kwargs):
            if self._capture_generation and model is self.model:
                self._capture_generation = False  # only TRL's old log-probs, not a reference model's after them
                logps, entropies, aux = super()._get_per_token_logps_and_entropies(
                    model, *args, compute_entropy=True, **kwargs)
                self._generation_logps = (logps.detach().float().cpu(), entropies.detach().float().cpu())
                return logps, entropies if compute_entropy else None, aux
            logps, entropies, aux = super()._get_per_token_logps_and_entropies(
                model, *args, compute_entropy=compute_entropy, **kwargs)
            if self._loss_rows is not None and entropies is not None and self._pending is not None:
                self._pending.add(self._loss_rows, logps.detach().float().cpu(), entropies.detach().float().cpu())
                self._loss_rows = None
                if self._pending.complete():
                    self._flush_pending()
            return logps, entropies, aux

        def _compute_loss(self, model, inputs):
            rows = inputs.pop("r1studio_row", None) if isinstance(inputs, dict) else None
            self._loss_rows = rows.cpu().tolist() if rows is not None else None
            try:
                return super()._compute_loss(model, inputs)
            finally:
                self._loss_rows = None

        def _flush_pending(self):
            if self._pending is not None:
                pending, self._pending = self._pending, None
                events.write("rollouts", step=pending.step, rows=pending.finished(token_bytes))

        def train(self, *args, **kwargs):
            try:
                return super().train(*args, **kwargs)
            finally:
                self._flush_pending()

    grpo = spec.grpo
    tokenizer = _tokenizer(spec.model_path)
    token_bytes = TokenBytes(tokenizer) if grpo.capture_tokens else None
    eos_ids = _eos_token_ids(spec.model_path, tokenizer)
    judge = make_judge(grpo.judge, MemoryCache()) if grpo.judge else None  # no database here: a run's own cache
    pool = ScoringPool(grpo.recipe, processes=grpo.scoring_processes, timeout_s=grpo.scoring_timeout_s, judge=judge)
    rewards = RecipeRewards(grpo.recipe, pool, eos_ids, grpo.max_completion_length)
    args = GRPOConfig(
        **_common_args(spec),
        num_generations=grpo.num_generations,
        steps_per_generation=grpo.steps_per_generation,
        max_completion_length=grpo.max_completion_length,
        temperature=grpo.temperature,
        top_p=grpo.top_p,
        beta=grpo.beta,
        epsilon=grpo.epsilon,
        loss_type=grpo.loss_type,
        reward_weights=rewards.weights,
        use_vllm=grpo.use_vllm,
        vllm_mode="colocate",
    )
    return RecordingGRPOTrainer(model=spec.model_path, args=args, reward_funcs=rewards.functions(),
                                train_dataset=_read_jsonl(spec.data_path), processing_class=tokenizer,
                                peft_config=_peft_config(spec))


def _eos_token_ids(model_path: str, tokenizer) -> list[int]:
    from transformers import GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(model_path).eos_token_id
    except OSError:
        eos = None
    eos = eos if eos is not None else tokenizer.eos_token_id
    return list(eos) if isinstance(eos, (list, tuple)) else [eos]


class _PendingRows:
    """A batch's rollout rows waiting for the loss to give their tokens' log-probabilities and entropies."""

    def __init__(self, step: int, rows: list[RolloutRow], completion_ids):
        self.step, self.rows, self.completion_ids = step, rows, completion_ids
        self.logps: dict[int, tuple] = {}

    def add(self, places: list[int], logps, entropies) -> None:
        for k, place in enumerate(places):
            self.logps[place] = (logps[k], entropies[k])

    def complete(self) -> bool:
        return len(self.logps) == len(self.rows)

    def finished(self, token_bytes) -> list[RolloutRow]:
        places = sorted(self.logps)
        if places:
            logps = torch.stack([self.logps[p][0] for p in places])
            entropies = torch.stack([self.logps[p][1] for p in places])
            add_token_traces(self.rows, {"completion_ids": self.completion_ids}, logps, entropies, places,
                             token_bytes)
        return self.rows


def add_token_traces(rows: list[RolloutRow], output: dict, logps, entropies, places, token_bytes) -> None:
    """Each row's "tokens": its completion ids, log-probabilities and entropies (logps and entropies hold one
    padded row per place in `places`), as a JSON-ready workers.tokens.TokenTrace."""
    completion_ids = output["completion_ids"].cpu().numpy()
    logps, entropies = logps.numpy(), entropies.numpy()  # whole arrays once: a tensor slice per row costs more
    for k, place in enumerate(places):
        row = rows[place]
        n = row["completion_tokens"]
        ids = completion_ids[place, :n]
        trace = TokenTrace(ids=ids, logprobs=logps[k, :n], entropy=entropies[k, :n],
                           pieces=token_bytes.pieces(ids), entropy_kind="tempered")
        row["tokens"] = trace.to_json()


def rollout_rows(trainer, inputs: list[dict], output: dict, rewards) -> list[RolloutRow]:
    """One row per completion of this process's share of the batch."""
    group_size = trainer.num_generations
    offset = trainer.accelerator.process_index * len(inputs)  # the batch is split across processes in order
    advantages = output["advantages"].reshape(-1).tolist()
    completion_tokens = output["completion_mask"].sum(dim=1).tolist()
    prompt_tokens = output["prompt_mask"].sum(dim=1).tolist()
    rows = []
    for i, (inp, sample, scored) in enumerate(zip(inputs, rewards.samples, rewards.scored, strict=True)):
        position = offset + i
        rows.append({
            "prompt_id": inp["prompt_id"],
            "group": position // group_size,
            "sample_index": position % group_size,
            "prompt_text": inp["prompt"] if isinstance(inp["prompt"], str) else json.dumps(inp["prompt"]),
            "completion": sample.completion,
            "prompt_tokens": int(prompt_tokens[i]),
            "completion_tokens": int(completion_tokens[i]),
            "finish_reason": sample.finish_reason,
            "advantage": advantages[i],
            "scored": scored,
        })
    return rows


def _event_callback(events: EventWriter, spec: TrainSpec):
    from transformers import TrainerCallback

    grpo = spec.grpo
    stop_rule = StopRule(grpo.stop_format_at, grpo.stop_falling_steps) if grpo and grpo.stop_format_at is not None \
        else None
    seen: list = []  # the steps' figures the stop rule reads

    class EventCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs:
                return
            figures = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)}
            if stop_rule and "train_runtime" not in figures:
                # TRL gathers its logged figures across ranks: every rank decides alike and stops at the same step.
                seen.append(step_from_trl_logs(state.global_step, figures, spec.per_device_batch_size * spec.processes))
                reason = stop_rule.should_stop(seen)
                if reason:
                    control.should_training_stop = True
                    if state.is_world_process_zero:
                        events.write("stopped", step=state.global_step, reason=reason)
            if not state.is_world_process_zero:
                return
            if "train_runtime" in figures:  # the end-of-training summary, not a step
                events.write("summary", step=state.global_step, metrics=figures)
            else:
                events.write("metrics", step=state.global_step, max_steps=state.max_steps, metrics=figures)

        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            (path / CHECKPOINT_MARKER).write_text(json.dumps({"step": state.global_step, "kind": spec.kind}))
            events.write("checkpoint", step=state.global_step, path=str(path))

    return EventCallback()


def latest_checkpoint(checkpoint_dir: Path) -> tuple[int, Path] | None:
    """The newest checkpoint that was saved whole (a save cut short by a full disk has no marker)."""
    found = []
    for path in Path(checkpoint_dir).glob("checkpoint-*"):
        if (path / CHECKPOINT_MARKER).exists() and path.name.split("-")[-1].isdigit():
            found.append((int(path.name.split("-")[-1]), path))
    return max(found, default=None)


def save_final(trainer, spec: TrainSpec) -> Path:
    """The trained model as a plain transformers folder (LoRA merged in), moved into place only when whole."""
    final_dir = Path(spec.final_dir)
    partial = final_dir.with_name(final_dir.name + ".partial")
    if spec.lora:
        if trainer.accelerator.is_main_process:
            merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
            merged.save_pretrained(partial)
            trainer.processing_class.save_pretrained(partial)
    else:
        trainer.save_model(str(partial))
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process:
        shutil.rmtree(final_dir, ignore_errors=True)  # a finished earlier attempt's
        os.replace(partial, final_dir)
    return final_dir


if __name__ == "__main__":
    main(sys.argv[1:])
