"""Issue 16: does the job system's SFT train the tiny model as a plain TRL SFT with the same recipe does?

    python benchmarks/sft_parity.py [--steps 300] [--task small-sums] [--seed 0] [--paths job,plain,tiny]
                                    [--job-override lr_scheduler=constant_with_warmup,warmup_steps=0]
                                    [--data built|built-decontaminated|miniature-unfiltered] [--train-seed S]

On a scratch Postgres database (DATABASE_URL, else r1bench), from the miniature's base model and its
frozen format examples (apps/training/miniature.py), the same recipe (batch 8, LR 3e-3 cosine, 10% warmup,
seed) three ways:

- job: the SFT job run in this process, as the miniature launches it (data.jsonl + spec.json, accelerate
  launch, TRL under workers.training.train);
- plain: TRL's SFTTrainer straight from the recipe, written out here, on prompt/completion pairs made from
  the stored examples without the project's row builder;
- tiny: workers.generation.tiny.sft_format, the path `r1studio tiny_model` trains with, on the same rows;
- built: build_tiny_model(sft_steps=N) whole, as `r1studio tiny_model` runs it: the same base weights and
  recipe, but its own examples (a different draw of the same 1-3-step problems).

Before training, the job's trainer (rebuilt in-process from its own spec.json and data.jsonl) and the plain
one are compared: their rows, the SFTConfig each ends up with, and the first batch's token ids and loss
masks. After it: the learning rate at a few steps, the loss, and held-out pass@1 through the project's
evaluation job (200 prompts x 4 samples at t=0.6 / top-p 0.95 and at t=1.0). `--data` and `--train-seed`
train the plain and tiny paths on another draw of examples or with another seed: how much of a difference
in pass@1 the data alone makes (the job and plain paths train bit for bit alike on the same rows).
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_db import DEFAULT_URL, print_machine, setup_django  # noqa: E402

# Fields that name where a run writes or that only say how often it logs: not part of how it trains.
NOT_TRAINING = {"output_dir", "logging_dir", "logging_steps", "run_name", "save_strategy", "save_steps"}


def plain_config(steps: int, seed: int, output_dir: str):
    """The recipe as ML-NOTES and the miniature state it, written out: nothing taken from the project."""
    from trl import SFTConfig

    return SFTConfig(output_dir=output_dir, max_steps=steps, per_device_train_batch_size=8, learning_rate=3e-3,
                     lr_scheduler_type="cosine", warmup_steps=steps // 10, seed=seed, logging_steps=1,
                     save_strategy="no", bf16=False, use_cpu=True, activation_checkpointing=False, report_to="none",
                     dataloader_pin_memory=False, disable_tqdm=True)


def plain_rows(version) -> list[dict]:
    """Prompt/completion pairs from the stored examples: the R1-Zero prompt and the worked answer as stored."""
    from workers.generation.templates import R1_ZERO

    rows = []
    for example in version.ordered_examples():
        question, answer = example.messages[0]["content"], example.messages[-1]["content"]
        rows.append({"prompt": R1_ZERO.format(question=question), "completion": answer})
    return rows


# The examples the plain and tiny paths can train on instead of the miniature's frozen format version (which
# leaves out every held-out and GRPO question): `r1studio tiny_model`'s own draw (seed + 1, nothing left out),
# that draw with the miniature's questions left out, and the miniature's draw with nothing left out.
DATA = ("miniature", "built", "built-decontaminated", "miniature-unfiltered")


def other_rows(data: str, config) -> list[dict]:
    from apps.training.miniature import TASKS
    from workers.generation.templates import R1_ZERO
    from workers.generation.tiny import worked_completion
    from workers.synthetic import arithmetic_dataset

    if data.startswith("built"):
        problems = arithmetic_dataset(config.sft_steps * 8 + 1, seed=config.seed + 1)  # build_tiny_model's
    else:
        problems = arithmetic_dataset(config.sft_steps * 8, seed=30_000 + config.seed)  # _datasets' draw
    if data == "built-decontaminated":
        task = TASKS[config.task]
        seen = {p["question"] for p in task(config.heldout, 10_000 + config.seed)
                + task(config.train_prompts, 20_000 + config.seed)}
        problems = [p for p in problems if p["question"] not in seen]
    return [{"prompt": R1_ZERO.format(question=p["question"]), "completion": worked_completion(p)} for p in problems]


def plain_trainer(model_path: str, rows: list[dict], steps: int, seed: int, output_dir: str):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    model = AutoModelForCausalLM.from_pretrained(model_path)
    return SFTTrainer(model=model, args=plain_config(steps, seed, output_dir),
                      train_dataset=Dataset.from_list(rows), processing_class=AutoTokenizer.from_pretrained(model_path))


def first_batch(trainer) -> dict:
    batch = next(iter(trainer.get_train_dataloader()))
    return {k: v.tolist() for k, v in batch.items() if hasattr(v, "tolist")}


def args_dict(trainer) -> dict:
    return {k: v for k, v in json.loads(trainer.args.to_json_string()).items() if k not in NOT_TRAINING}


def compare_before_training(job_run: Path, rows: list[dict], base_uri: str, steps: int, seed: int, out: Path) -> None:
    """The job's trainer as its process builds it (from its own spec.json and data.jsonl) against the plain one."""
    from workers.training.spec import TrainSpec
    from workers.training.train import build_sft

    spec = TrainSpec.from_json((job_run / "spec.json").read_text())
    job_rows = [json.loads(line) for line in (job_run / "data.jsonl").read_text().splitlines() if line.strip()]
    differing = sum(a != b for a, b in zip(job_rows, rows, strict=True))
    print(f"rows: job {len(job_rows)}, plain {len(rows)}; rows that differ: {differing}")
    with tempfile.TemporaryDirectory() as scratch:
        job = build_sft(spec, events=None)
        plain = plain_trainer(base_uri, rows, steps, seed, scratch)
        job_args, plain_args = args_dict(job), args_dict(plain)
        (out / "args.job.json").write_text(json.dumps(job_args, indent=1, sort_keys=True, default=str))
        (out / "args.plain.json").write_text(json.dumps(plain_args, indent=1, sort_keys=True, default=str))
        differences = {k: (job_args.get(k), plain_args.get(k)) for k in job_args.keys() | plain_args.keys()
                       if job_args.get(k) != plain_args.get(k)}
        print(f"SFTConfig fields that differ (job, plain): {differences or 'none'}")
        a, b = first_batch(job), first_batch(plain)
        print(f"first batch keys: job {sorted(a)}, plain {sorted(b)}")
        for key in sorted(a.keys() & b.keys()):
            print(f"  {key}: {'identical' if a[key] == b[key] else 'DIFFERENT'}")
        # The tokens the loss falls on: labels other than -100 (TRL masks the prompt and the padding so).
        tokenizer = job.processing_class
        trained = [t for t, label in zip(a["input_ids"][0], a["labels"][0], strict=True) if label != -100]
        print(f"  first row, tokens with loss: {tokenizer.decode(trained)!r}")
        print(f"  first row ends with EOS in the loss: {trained[-1] == tokenizer.eos_token_id}")


def register(name: str, path: Path, base):
    from apps.datasets.models import ModelVersion

    return ModelVersion.objects.create(name=name, uri=str(path), stage=ModelVersion.Stage.COLD_START, parent=base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", default="small-sums", help="The held-out problems: small-sums or one-step")
    parser.add_argument("--heldout", type=int, default=200)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--paths", default="job,plain,tiny")
    parser.add_argument("--data", default="miniature", choices=DATA,
                        help="The plain and tiny paths' examples (the job always trains on the miniature's)")
    parser.add_argument("--train-seed", type=int, default=None, help="The plain and tiny paths' training seed "
                        "(default --seed, which also draws the base model and the data)")
    parser.add_argument("--job-override", default="", help="k=v,... added to the job's parameters (e.g. the old "
                        "spec's lr_scheduler=constant_with_warmup,warmup_steps=0)")
    parser.add_argument("--out", default="", help="Where to write the args dumps and the figures (default: a temp dir)")
    args = parser.parse_args()
    os.environ.setdefault("R1_STORAGE_ROOT", tempfile.mkdtemp(prefix="sft-parity-"))
    setup_django(os.environ.get("DATABASE_URL") or DEFAULT_URL)
    print_machine()

    import torch
    from django.conf import settings

    from apps.datasets.models import ModelVersion
    from apps.jobs import launching
    from apps.training.miniature import MiniatureConfig, _base_model, _datasets, tiny_model_preset
    from apps.training.models import Evaluation, StepMetric
    from workers.generation.tiny import sft_format

    torch.set_num_threads(int(os.environ.get("R1_TRAINING_CPU_THREADS") or 1))
    out = Path(args.out or tempfile.mkdtemp(prefix="sft-parity-out-"))
    out.mkdir(parents=True, exist_ok=True)
    # The miniature's own base model and format examples (their names are reused: one base per seed).
    config = MiniatureConfig(sft_steps=args.steps, seed=args.seed, heldout=args.heldout, task=args.task,
                             name=f"parity-{args.task}-{args.steps}-s{args.seed}")
    base = _base_model(settings.STORAGE_ROOT / "models", config)
    format_version, _train, heldout = _datasets(config)
    job_rows = plain_rows(format_version)
    rows = job_rows if args.data == "miniature" else other_rows(args.data, config)
    train_seed = args.seed if args.train_seed is None else args.train_seed
    stamp = int(time.time())
    overrides = dict(kv.split("=", 1) for kv in args.job_override.split(",") if kv)
    overrides = {k: int(v) if v.isdigit() else v for k, v in overrides.items()}

    def pass_at_1(model) -> dict:
        found = {}
        for temperature in (0.6, 1.0):
            job = launching.run_here("evaluate", {
                "model_version": model.pk, "dataset": heldout.pk, "n": args.samples, "pass_k": args.samples,
                "temperature": temperature, "top_p": 0.95 if temperature < 1 else 1.0, "max_tokens": 64,
                "batch_size": 50, "seed": args.seed}, label=f"parity eval {model.name} t={temperature}")
            found[temperature] = Evaluation.objects.get(job=job).metrics["pass@1"]
        return found

    results = {}
    for path in args.paths.split(","):
        started = time.monotonic()
        if path == "job":
            job = launching.run_here("sft", tiny_model_preset("sft") | {
                "model_version": base.pk, "dataset_version": format_version.pk, "format": "r1_zero",
                "stage": "cold_start", "max_steps": args.steps, "warmup_steps": args.steps // 10, "save_steps": 0,
                "seed": args.seed, "output_name": f"{config.name}-job-{stamp}"} | overrides, label="parity SFT")
            model = ModelVersion.objects.get(pk=job.result["model_version"])
            logs = [m.metrics | {"step": m.step} for m in StepMetric.objects.filter(job=job).order_by("step")]
            run_dir = Path(settings.STORAGE_ROOT) / "runs" / f"job-{job.pk}"
            if not overrides:
                compare_before_training(run_dir, job_rows, base.uri, args.steps, args.seed, out)
        elif path == "plain":
            trainer = plain_trainer(base.uri, rows, args.steps, train_seed, str(out / "plain-run"))
            trainer.train()
            folder = out / "plain-final"
            trainer.save_model(str(folder))
            model = register(f"{config.name}-plain-{stamp}", folder, base)
            logs = [e | {"step": e["step"]} for e in trainer.state.log_history if "loss" in e]
        elif path == "tiny":
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(base.uri)
            net = AutoModelForCausalLM.from_pretrained(base.uri)
            losses = sft_format(net, tokenizer, rows, steps=args.steps, seed=train_seed)
            folder = out / "tiny-final"
            net.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            model = register(f"{config.name}-tiny-{stamp}", folder, base)
            logs = [{"loss": loss, "step": (i + 1) * max(1, args.steps // 10)} for i, loss in enumerate(losses)]
        elif path == "built":  # `r1studio tiny_model --sft-steps N`: its own examples (seed + 1), not the miniature's
            from workers.generation.tiny import build_tiny_model

            folder = build_tiny_model(out / "built-final", seed=args.seed, sft_steps=args.steps)
            model = register(f"{config.name}-built-{stamp}", folder, base)
            losses = json.loads((folder / "r1studio.json").read_text())["sft_losses"]
            logs = [{"loss": loss, "step": (i + 1) * max(1, args.steps // 10)} for i, loss in enumerate(losses)]
        else:
            raise SystemExit(f"unknown path {path!r}")
        seconds = time.monotonic() - started
        figures = pass_at_1(model)
        by_step = {e["step"]: e for e in logs}
        warmup = args.steps // 10
        lrs = {s: by_step[s].get("learning_rate") for s in (1, 2, warmup, warmup + 1, args.steps // 2, args.steps)
               if s in by_step}
        # The loss over the last tenth of the steps (what sft_format logs as its last figure).
        last = [e["loss"] for e in logs if "loss" in e and e["step"] > args.steps - max(1, args.steps // 10)]
        results[path] = {"pass@1": figures, "lr": lrs, "final_loss": sum(last) / max(1, len(last)),
                         "losses": [(e["step"], e.get("loss")) for e in logs], "train_s": round(seconds, 1)}
        print(f"{path}: pass@1 t=0.6 {figures[0.6]:.3f}, t=1.0 {figures[1.0]:.3f}; loss over the last "
              f"tenth {results[path]['final_loss']:.4f}; LR {lrs}; {seconds:.0f} s", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))

    print()
    print(f"SFT {args.steps} steps (batch 8, LR 3e-3 cosine, {args.steps // 10} warmup), seed {args.seed}; "
          f"{len(job_rows)} job examples, {len(rows)} {args.data} examples (training seed {train_seed}); "
          f"pass@1 on {args.heldout} held-out {args.task} prompts x {args.samples} samples"
          + (f"; job overrides {overrides}" if overrides else ""))
    print("| path | pass@1 t=0.6 | pass@1 t=1.0 | loss, last tenth of the steps | LR at step 1 / after warmup / last |")
    print("|---|---:|---:|---:|---|")
    for path, r in results.items():
        lr = r["lr"]
        print(f"| {path} | {r['pass@1'][0.6]:.3f} | {r['pass@1'][1.0]:.3f} | {r['final_loss']:.4f} "
              f"| {lr.get(1)} / {lr.get(args.steps // 10 + 1)} / {lr.get(args.steps)} |")
    print(f"(dumps in {out})")


if __name__ == "__main__":
    main()
