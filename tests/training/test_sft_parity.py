"""Issue 16: the SFT job trains the model exactly as a plain TRL SFT of the same recipe does.

Run through the job system (the supervisor writes data.jsonl and spec.json, `accelerate launch` runs TRL)
and written out by hand with TRL alone, the miniature's format SFT must give the same learning rate and loss
at every step. That catches what the job could get wrong between the recipe and TRL: the LR schedule or its
warmup (in November the job's spec dropped them and trained at a constant 3e-3, while the stand-alone SFT
decayed from a warmup), loss on the prompt, a missing EOS, truncation, the data order or the seed.
benchmarks/sft_parity.py does the same at full length with held-out pass@1.
"""

import json

import pytest
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from apps.datasets.models import Example, ModelVersion
from apps.datasets.versions import freeze_version
from apps.jobs import launching
from apps.training.miniature import tiny_model_preset
from apps.training.models import StepMetric
from apps.training.training import Run
from workers.generation.templates import R1_ZERO
from workers.generation.tiny import build_tiny_model, worked_completion
from workers.synthetic import arithmetic_dataset
from workers.training.spec import TrainSpec
from workers.training.train import build_sft

pytestmark = pytest.mark.django_db(transaction=True)  # the job's heartbeat uses a connection of its own

STEPS, WARMUP, SEED = 4, 2, 0


@pytest.fixture
def base(tmp_path):
    return ModelVersion.objects.create(name="tiny-base", uri=str(build_tiny_model(tmp_path / "base")))


@pytest.fixture
def problems():
    return arithmetic_dataset(24, seed=30_000)  # the miniature's format problems


@pytest.fixture
def format_version(dataset, problems):
    return freeze_version(dataset, [Example.objects.create(dataset=dataset, messages=Example.chat(
        p["question"], worked_completion(p))) for p in problems])


def plain_trainer(model_path: str, problems: list[dict], output_dir) -> SFTTrainer:
    """The recipe (miniature + ML-NOTES) straight into TRL: nothing from the job system."""
    rows = [{"prompt": R1_ZERO.format(question=p["question"]), "completion": worked_completion(p)} for p in problems]
    args = SFTConfig(output_dir=str(output_dir), max_steps=STEPS, per_device_train_batch_size=8, learning_rate=3e-3,
                     lr_scheduler_type="cosine", warmup_steps=WARMUP, seed=SEED, logging_steps=1, save_strategy="no",
                     bf16=False, use_cpu=True, activation_checkpointing=False, report_to="none",
                     dataloader_pin_memory=False, disable_tqdm=True)
    return SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_path), args=args,
                      train_dataset=Dataset.from_list(rows), processing_class=AutoTokenizer.from_pretrained(model_path))


def test_the_sft_job_trains_as_a_plain_trl_sft_of_the_same_recipe(settings, tmp_path, base, format_version, problems):
    settings.STORAGE_ROOT = tmp_path / "storage"
    job = launching.run_here("sft", tiny_model_preset("sft") | {
        "model_version": base.pk, "dataset_version": format_version.pk, "format": "r1_zero", "stage": "cold_start",
        "max_steps": STEPS, "warmup_steps": WARMUP, "save_steps": 0, "seed": SEED})
    job_steps = {m.step: m.metrics for m in StepMetric.objects.filter(job=job)}

    plain = plain_trainer(base.uri, problems, tmp_path / "plain")
    first_batch = next(iter(plain.get_train_dataloader()))
    plain.train()
    plain_steps = {e["step"]: e for e in plain.state.log_history if "loss" in e}

    assert sorted(job_steps) == sorted(plain_steps) == list(range(1, STEPS + 1))
    for step in plain_steps:
        assert job_steps[step]["learning_rate"] == pytest.approx(plain_steps[step]["learning_rate"]), step
        assert job_steps[step]["loss"] == pytest.approx(plain_steps[step]["loss"], rel=1e-4), step

    # The batch the job's trainer process builds from what the supervisor wrote is the plain one, token for token:
    # the loss falls on the completion and its EOS, never on the prompt.
    run = Run(job)
    job_trainer = build_sft(TrainSpec.from_json(run.spec.read_text()), events=None)
    job_batch = next(iter(job_trainer.get_train_dataloader()))
    for key in ("input_ids", "attention_mask", "labels"):
        assert job_batch[key].tolist() == first_batch[key].tolist(), key
    tokenizer = job_trainer.processing_class
    ids, labels = job_batch["input_ids"][0].tolist(), job_batch["labels"][0].tolist()
    learnt = [token for token, label in zip(ids, labels, strict=True) if label != -100]
    text = tokenizer.decode(learnt)
    assert text.startswith("<think>") and text.endswith("</answer>" + tokenizer.eos_token), text
    assert learnt[-1] == tokenizer.eos_token_id
    rows = [json.loads(line) for line in run.data.read_text().splitlines()]
    longest = max(len(tokenizer(r["prompt"] + r["completion"])["input_ids"]) + 1 for r in rows)  # + its EOS
    assert longest <= job_trainer.args.max_length  # nothing truncated
