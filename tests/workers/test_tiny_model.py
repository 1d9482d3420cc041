"""The tiny local model: tokenizer, save/reload offline, generation, format SFT, the tiny_model command."""

import json
import os
import re
import subprocess
import sys
from collections import Counter
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.datasets.models import ModelVersion
from workers.rewards.base import Sample
from workers.rewards.format import format_reward
from workers.synthetic import arithmetic_dataset, arithmetic_work, countdown_dataset

tiny = pytest.importorskip("workers.generation.tiny")  # needs the "train" extra (torch, transformers, trl)

ROOT = Path(__file__).resolve().parents[2]
# The smallest SFT that reliably teaches the format: held-out format reward 0.86-1.0 over
# four seeds after 150 steps (100 steps: 0.6-0.98; 80: about 0). About 10 s here.
SFT_STEPS = 150


@pytest.fixture(scope="module")
def base_model_dir(tmp_path_factory):
    return tiny.build_tiny_model(tmp_path_factory.mktemp("tiny") / "base", seed=0)


@pytest.fixture(scope="module")
def tokenizer(base_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model_dir)


def held_out_prompts(n: int) -> list[dict]:
    """Arithmetic problems from a seed that no build uses, minus any that a build trained on."""
    seen = {p["question"] for p in arithmetic_dataset(4000, seed=1)}  # seed + 1: the SFT problems of seed 0
    return [p for p in arithmetic_dataset(n * 2, seed=12345) if p["question"] not in seen][:n]


class TestCountdown:
    def test_problems_are_solvable_with_each_number_at_most_once(self):
        for problem in countdown_dataset(300, seed=1):
            numbers, solution = problem["metadata"]["numbers"], problem["metadata"]["solution"]
            assert re.fullmatch(r"[\d+\-*/() ]+", solution)
            assert eval(solution) == int(problem["answer"])  # safe: digits and operators only (checked above)
            used = Counter(int(n) for n in re.findall(r"\d+", solution))
            assert not used - Counter(numbers), f"{solution} uses a number more often than {numbers} has it"
            assert problem["question"].startswith(f"Using the numbers {numbers}, make {problem['answer']}.")

    def test_distinct_and_deterministic(self):
        problems = countdown_dataset(500, seed=3)
        assert len({p["question"] for p in problems}) == 500
        assert countdown_dataset(500, seed=3) == problems
        assert countdown_dataset(50, seed=4) != problems[:50]
        assert {len(p["metadata"]["numbers"]) for p in problems} == {3, 4}

    def test_arithmetic_work_reaches_the_answer(self):
        for problem in arithmetic_dataset(300, seed=2):
            assert arithmetic_work(problem["question"])[-1].endswith(f"= {problem['answer']}")


class TestTokenizer:
    def test_tags_are_single_ordinary_tokens(self, tokenizer):
        for tag in tiny.TAGS:
            ids = tokenizer(tag, add_special_tokens=False)["input_ids"]
            assert len(ids) == 1 and tokenizer.convert_ids_to_tokens(ids) == [tag]
            assert tag not in tokenizer.all_special_tokens

    def test_tags_survive_decoding_with_skip_special_tokens(self, tokenizer):
        completion = "<think> 12 + 5 = 17 </think> <answer> 17 </answer>"
        ids = tokenizer(completion + tokenizer.eos_token)["input_ids"]
        assert tokenizer.decode(ids, skip_special_tokens=True) == completion  # TRL decodes this way
        assert format_reward(Sample(tokenizer.decode(ids, skip_special_tokens=True))).value == 1.0

    def test_chat_template_marks_the_assistant_turn_for_assistant_only_loss(self, tokenizer):
        messages = [{"role": "user", "content": "2 + 3?"}, {"role": "assistant", "content": "<answer> 5 </answer>"}]
        out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        marked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
        assert tokenizer.decode(marked) == "<answer> 5 </answer><|im_end|>"  # the stop token is trained too

    def test_save_and_reload_offline_give_the_same_ids(self, base_model_dir, tokenizer):
        text = tiny.r1_zero_prompt("Ana has 7 coins. Then Ana gets 5 more.") + " <think> 7 + 5 = 12 </think>"
        script = (
            "import json, sys\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            "tok = AutoTokenizer.from_pretrained(sys.argv[1])\n"
            "model = AutoModelForCausalLM.from_pretrained(sys.argv[1])\n"
            "print(json.dumps({'class': type(tok).__name__, 'ids': tok(sys.argv[2])['input_ids'],\n"
            "                  'padding_side': tok.padding_side, 'vocab': model.config.vocab_size}))\n"
        )
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        argv = [sys.executable, "-c", script, str(base_model_dir), text]
        run = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 0, run.stderr[-2000:]
        reloaded = json.loads(run.stdout.strip().splitlines()[-1])
        trained = tiny.train_tokenizer(
            [e["prompt"] + e["completion"] for e in tiny.sft_examples(n=tiny.TOKENIZER_PROBLEMS, seed=0)]
        )
        assert reloaded["class"] == type(trained).__name__  # not swapped for a model-specific tokenizer class
        assert reloaded["ids"] == trained(text)["input_ids"] == tokenizer(text)["input_ids"]
        assert reloaded["padding_side"] == "left"
        assert reloaded["vocab"] == len(trained)
        manifest = json.loads((base_model_dir / "r1studio.json").read_text())
        assert manifest["recipe"] == tiny.RECIPE and manifest["sft_steps"] == 0 and manifest["seed"] == 0

    def test_the_same_seed_builds_the_same_files(self, base_model_dir, tmp_path):
        again = tiny.build_tiny_model(tmp_path / "again", seed=0)
        for name in ("tokenizer.json", "model.safetensors", "config.json"):
            assert (again / name).read_bytes() == (base_model_dir / name).read_bytes(), name


def test_generates_from_a_left_padded_batch(base_model_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_model_dir)
    prompts = [tiny.r1_zero_prompt(p["question"]) for p in held_out_prompts(4)]
    prompts[0] += " And then some more words make this prompt the longest one."
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    assert (batch["input_ids"][1:, 0] == tokenizer.pad_token_id).all()  # padded on the left
    output = model.generate(**batch, max_new_tokens=8, do_sample=False)
    assert output.shape[0] == 4 and output.shape[1] <= batch["input_ids"].shape[1] + 8
    assert len(tiny.greedy_completions(model, tokenizer, prompts, max_new_tokens=8)) == 4


def test_short_sft_teaches_the_answer_format(base_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompts = [tiny.r1_zero_prompt(p["question"]) for p in held_out_prompts(32)]

    def mean_format_reward(path: Path) -> float:
        model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
        completions = tiny.greedy_completions(model, tok, prompts, max_new_tokens=64)
        return sum(format_reward(Sample(c)).value for c in completions) / len(completions)

    tuned = tiny.build_tiny_model(tmp_path / "sft", seed=0, sft_steps=SFT_STEPS)
    losses = json.loads((tuned / "r1studio.json").read_text())["sft_losses"]
    assert losses[-1] < losses[0] / 3, losses
    before, after = mean_format_reward(base_model_dir), mean_format_reward(tuned)
    assert before == 0.0  # random init: never the format
    assert after >= 0.5, f"format reward {after:.2f} after {SFT_STEPS} SFT steps"


class TestCommand:
    def test_registers_a_model_version_under_storage_root(self, db, settings, tmp_path):
        settings.STORAGE_ROOT = tmp_path
        out = StringIO()
        call_command("tiny_model", "--name", "tiny-test", "--sft-steps", "0", "--seed", "3", stdout=out)
        version = ModelVersion.objects.get(name="tiny-test")
        path = tmp_path / "models" / "tiny-test"
        assert (version.uri, version.backend, version.stage) == (str(path), "transformers", "base")
        assert version.config == json.loads((path / "r1studio.json").read_text())
        assert version.config["seed"] == 3 and version.step is None
        assert str(path) in out.getvalue() and f"id: {version.pk}" in out.getvalue()

    def test_a_taken_name_is_an_error_before_building(self, db, tmp_path):
        ModelVersion.objects.create(name="tiny-taken", uri="/elsewhere")
        with pytest.raises(CommandError, match="already registered"):
            call_command("tiny_model", "--name", "tiny-taken", "--out", str(tmp_path / "m"), stdout=StringIO())
        assert not (tmp_path / "m").exists()

    @pytest.mark.parametrize("args, message", [
        (["--name", "../escape"], "--name"),
        (["--tasks", "chess"], "--tasks"),
        (["--sft-steps", "-1"], "--sft-steps"),
    ])
    def test_bad_arguments(self, db, tmp_path, args, message):
        with pytest.raises(CommandError, match=message):
            call_command("tiny_model", "--out", str(tmp_path / "m"), *args, stdout=StringIO())
