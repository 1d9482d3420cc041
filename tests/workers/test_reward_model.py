"""The reward-model component, on tiny random models built here: no hub, no download, CPU only."""

import math
import time

import pytest

pytest.importorskip("torch")  # torch and transformers come with the "train" extra
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from workers.rewards.base import Sample  # noqa: E402
from workers.rewards.reward_model import RewardModel, load_reward_model, reward_model_score  # noqa: E402

CORPUS = [
    "<think> two plus two is four </think> <answer> 4 </answer>",
    "The sum of the numbers is even, so we divide by two.",
    "Let me check the answer again: 3 + 4 = 7.",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<eos>{% endfor %}"
)


def build_tiny_model(folder, architecture: str, num_labels: int = 1, chat_template: str | None = None):
    """A random-init sequence classifier (hidden 32, 2 layers) and a byte-level BPE tokenizer, saved to folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        LlamaConfig,
        LlamaForSequenceClassification,
        PreTrainedTokenizerFast,
        Qwen3Config,
        Qwen3ForSequenceClassification,
    )

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, padding_side="left", pad_token="<pad>",
                                        eos_token="<eos>")
    if chat_template:
        tokenizer.chat_template = chat_template

    config_class, model_class = {
        "llama": (LlamaConfig, LlamaForSequenceClassification),
        "qwen3": (Qwen3Config, Qwen3ForSequenceClassification),
    }[architecture]
    config = config_class(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
        num_labels=num_labels, pad_token_id=tokenizer.pad_token_id,
        id2label={i: name for i, name in enumerate(["bad", "good"][:num_labels])} if num_labels > 1 else None,
    )
    torch.manual_seed(0)
    model_class(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", autouse=True)
def offline():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")  # any hub call would fail loudly; local_files_only already avoids them
        yield


@pytest.fixture(scope="module", params=[
    pytest.param(("llama", None), id="llama, text pairs"),
    pytest.param(("qwen3", CHAT_TEMPLATE), id="qwen3, chat template"),
])
def model_path(request, tmp_path_factory, offline):
    architecture, template = request.param
    return build_tiny_model(tmp_path_factory.mktemp(architecture), architecture, chat_template=template)


PAIRS = [
    # (prompt, completion): lengths differ, so batches are padded
    ("What is 2 + 2?", "<think>two plus two is four</think><answer>4</answer>"),
    ("q", "a"),
    ("Add 3 and 4.", "Let me check the answer again: 3 + 4 = 7. " * 20),
    ("", ""),  # nothing at all: scored as the EOS token alone
    ("NUL", "x\x00y\x00z"),
    ("surrogates", "\ud800 lone \udfff halves"),
    ("10,000 lines", "\n".join(f"step {i}" for i in range(10_000))),
    ("10 MB", "word " * 2_000_000),  # clipped before tokenizing
]


def test_scores_are_finite_and_batching_does_not_change_them(model_path):
    model = RewardModel(model_path, batch_size=3, max_length=64)
    start = time.perf_counter()
    batched = model.score(PAIRS)
    assert time.perf_counter() - start < 10  # safety bound: clipping keeps the 10 MB text cheap
    one_by_one = [model.score([pair])[0] for pair in PAIRS]
    assert len(batched) == len(PAIRS)
    assert all(math.isfinite(v) for v in batched)
    assert batched == pytest.approx(one_by_one, abs=1e-4)
    assert len(set(round(v, 6) for v in batched)) > 1  # a random model still tells inputs apart


def test_component_caches_the_model_per_path(model_path):
    sample = Sample("<think>two plus two</think><answer>4</answer>", prompt="What is 2 + 2?")
    first = reward_model_score(sample, model_path=str(model_path), max_length=64)
    assert math.isfinite(first.value)
    assert first.details == {"model": model_path.name, "logit": first.value}
    assert load_reward_model(model_path, batch_size=16, max_length=64, label=None) is load_reward_model(
        str(model_path), batch_size=16, max_length=64, label=None)
    again = reward_model_score(sample, model_path=model_path, max_length=64)
    assert again.value == pytest.approx(first.value)


@pytest.mark.parametrize("completion, reason", [
    ("", "empty completion"),  # bad model output: a zero with a reason, not an exception
    ("   \n", "empty completion"),
])
def test_component_on_empty_output(model_path, completion, reason):
    result = reward_model_score(Sample(completion), model_path=model_path, max_length=64)
    assert result.value == 0.0 and result.details["reason"] == reason


@pytest.mark.parametrize("path", [
    "/nonexistent/reward-model",  # no such folder
    "relative/missing",  # a relative path that is not there either
])
def test_a_missing_model_is_a_clear_error(path):
    with pytest.raises(FileNotFoundError, match="no reward model at .*save_pretrained"):
        RewardModel(path)
    with pytest.raises(FileNotFoundError, match="no reward model at"):
        reward_model_score(Sample("x"), model_path=path)


def test_a_folder_without_weights_is_not_mistaken_for_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        RewardModel(tmp_path)


def test_a_multi_label_model_needs_a_label(tmp_path_factory, offline):
    path = build_tiny_model(tmp_path_factory.mktemp("two-labels"), "llama", num_labels=2)
    with pytest.raises(ValueError, match=r"2 labels \['bad', 'good'\]: pass label="):
        RewardModel(path)
    with pytest.raises(ValueError, match="no label 'great'"):
        RewardModel(path, label="great")
    by_name = RewardModel(path, label="good", max_length=64).score(PAIRS[:3])
    by_index = RewardModel(path, label=1, max_length=64).score(PAIRS[:3])
    other = RewardModel(path, label=0, max_length=64).score(PAIRS[:3])
    assert by_name == pytest.approx(by_index)
    assert by_name != pytest.approx(other)
