"""GRPO's token capture on the tiny model: every completion's ids, log-probabilities and entropies come from TRL's
own forward pass (the loss's, or the old log-probs' when the samples outlive a step), and agree with the model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workers.generation.templates import R1_ZERO, render
from workers.generation.tiny import build_tiny_model
from workers.rewards.recipes import DEFAULT_RECIPES
from workers.tokens import TokenTrace
from workers.training.spec import GRPOSpec, TrainSpec

ROOT = Path(__file__).resolve().parents[2]
TEMPERATURE = 0.8


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def run_trainer(tmp_path, model_path, *, steps_per_generation, capture=True, max_steps=2):
    data = tmp_path / "data.jsonl"
    with open(data, "w") as f:
        for i in range(8):
            question = f"What is {i} + 3?"
            f.write(json.dumps({"prompt": render(R1_ZERO, question), "prompt_id": i + 1, "question": question,
                                "reference": str(i + 3), "tests": "[]", "domain": "math", "language": "en"}) + "\n")
    grpo = GRPOSpec(recipe=DEFAULT_RECIPES["r1-zero-math"], num_generations=4,
                    steps_per_generation=steps_per_generation, max_completion_length=24, temperature=TEMPERATURE,
                    beta=0.0, epsilon=0.2, loss_type="dapo", capture_tokens=capture)
    spec = TrainSpec(kind="grpo", model_path=str(model_path), data_path=str(data), run_dir=str(tmp_path),
                     checkpoint_dir=str(tmp_path / "checkpoints"), final_dir=str(tmp_path / "final"),
                     max_steps=max_steps, learning_rate=0.0, per_device_batch_size=8, save_steps=0, seed=1, grpo=grpo)
    (tmp_path / "spec.json").write_text(spec.to_json())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "workers.training.train", str(tmp_path / "spec.json")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in (tmp_path / "events.0.jsonl").read_text().splitlines()]
    return [(e["step"], row) for e in events if e["type"] == "rollouts" for row in e["rows"]]


def forward_logprobs(model, tokenizer, prompt: str, ids: list[int]):
    """log softmax(logits / T) of each completion token, and the entropy there: what TRL's loss computes."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    full = torch.cat([prompt_ids, torch.tensor([ids])], dim=1)
    with torch.no_grad():
        logits = model(full).logits[0, prompt_ids.shape[1] - 1:-1].float() / TEMPERATURE
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(1, torch.tensor(ids)[:, None]).squeeze(1), torch.special.entr(logp.exp()).sum(-1)


@pytest.mark.parametrize("steps_per_generation", [1, 2], ids=["from-the-loss", "from-the-old-logps"])
def test_every_grpo_completion_carries_the_trainers_log_probs_and_entropies(tmp_path, tiny_path, steps_per_generation):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = run_trainer(tmp_path, tiny_path, steps_per_generation=steps_per_generation)
    # 2 optimizer steps of 8 completions; with 2 steps per generation, one batch of 16 serves both steps.
    assert len(rows) == 16
    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_path).eval()  # learning rate 0: the policy never moved
    for _, row in rows:
        trace = TokenTrace.from_json(row["tokens"])
        assert len(trace) == row["completion_tokens"] > 0 and trace.entropy_kind == "tempered"
        assert tokenizer.decode(trace.ids.tolist(), skip_special_tokens=True) == row["completion"]
        assert b"".join(trace.pieces[i] for i in trace.ids.tolist()).decode("utf-8", "replace") \
            == tokenizer.decode(trace.ids.tolist(), skip_special_tokens=False)
        logprobs, entropy = forward_logprobs(model, tokenizer, row["prompt_text"], trace.ids.tolist())
        # float16 keeps 11 significant bits: a relative error of at most 2**-11, plus the trainer's own rounding.
        assert torch.allclose(torch.from_numpy(trace.logprobs), logprobs, rtol=2**-10, atol=1e-3)
        assert torch.allclose(torch.from_numpy(trace.entropy), entropy, rtol=2**-10, atol=1e-3)


def test_without_capture_rows_carry_no_tokens(tmp_path, tiny_path):
    rows = run_trainer(tmp_path, tiny_path, steps_per_generation=1, capture=False, max_steps=1)
    assert len(rows) == 8 and not any("tokens" in row for _, row in rows)
