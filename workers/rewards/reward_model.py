"""A model-based reward for all-scenario RL: a sequence-classification reward model scores (prompt, completion).

The model and tokenizer load from a LOCAL folder written by save_pretrained
(local_files_only=True: never the hub). Scoring runs on CPU in eval mode under
torch.no_grad, in batches. The score of a pair is the logit of one label: the
only one for a num_labels=1 reward model, or the one named by `label`.

How a pair becomes text: with a chat template, a user turn (the prompt) and an
assistant turn (the completion); without one, the tokenizer's text pair, as
cross-encoder reward models expect. Long inputs are cut from the left, keeping
the end of the completion, where the answer is.

torch and transformers are imported only when a model is loaded, so the rule
components never pay for them.
"""

import inspect
import math
import threading
from pathlib import Path

from .base import Reward, Sample

CHARS_PER_TOKEN_BOUND = 8  # texts are clipped to max_length × this many characters before tokenizing


class RewardModel:
    def __init__(self, path, *, batch_size: int = 16, max_length: int = 2048, label: int | str | None = None):
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"no reward model at {path}: expected a local folder saved with save_pretrained "
                "(config.json, weights and tokenizer files)"
            )
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.path, self.batch_size, self.max_length = path, batch_size, max_length
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.tokenizer.truncation_side = "left"
        if self.tokenizer.pad_token is None:  # many decoder reward models ship without one
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
        self.model.eval()
        if self.model.config.pad_token_id is None:  # the head finds each row's last token by it
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.label_index = self._label_index(label)
        # Left padding shifts the positions of the real tokens; give each row positions from 0.
        self._takes_position_ids = "position_ids" in inspect.signature(self.model.forward).parameters

    def _label_index(self, label) -> int:
        config = self.model.config
        if label is None:
            if config.num_labels != 1:
                raise ValueError(f"{self.path} has {config.num_labels} labels {list(config.id2label.values())}: "
                                 "pass label= (an index or a name)")
            return 0
        if isinstance(label, str):
            names = {name: int(i) for i, name in config.id2label.items()}
            if label not in names:
                raise ValueError(f"{self.path} has no label {label!r}; labels: {list(names)}")
            return names[label]
        if not 0 <= label < config.num_labels:
            raise ValueError(f"label index {label} out of range for {config.num_labels} labels")
        return label

    def score(self, pairs) -> list[float]:
        """One float per (prompt, completion) pair, in order."""
        pairs = [(self._clean(prompt), self._clean(completion)) for prompt, completion in pairs]
        # A model needs at least one token: an empty pair is scored as the EOS token alone.
        filler = self.tokenizer.eos_token or self.tokenizer.pad_token
        pairs = [(p, c) if p or c else ("", filler) for p, c in pairs]
        # Similar lengths share a batch, so less padding; the order is restored at the end.
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        scores = [0.0] * len(pairs)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            for i, value in zip(batch, self._score_batch([pairs[i] for i in batch])):
                scores[i] = value
        return scores

    def _clean(self, text: str) -> str:
        """Keep the end (what left truncation would keep anyway); lone surrogates become '?'
        (the Rust tokenizer accepts only valid UTF-8)."""
        text = (text or "")[-self.max_length * CHARS_PER_TOKEN_BOUND:]
        return text.encode("utf-8", "replace").decode("utf-8")

    def _score_batch(self, pairs) -> list[float]:
        import torch

        encoded = self._encode(pairs)
        inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        if self._takes_position_ids:
            inputs["position_ids"] = (encoded["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            logits = self.model(**inputs).logits
        return logits[:, self.label_index].float().tolist()

    def _encode(self, pairs):
        common = {"padding": True, "truncation": True, "max_length": self.max_length, "return_tensors": "pt"}
        if getattr(self.tokenizer, "chat_template", None):
            texts = [
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}],
                    tokenize=False,
                )
                for prompt, completion in pairs
            ]
            return self.tokenizer(texts, add_special_tokens=False, **common)
        prompts, completions = zip(*pairs)
        return self.tokenizer(list(prompts), list(completions), **common)


_models: dict[tuple, RewardModel] = {}
_models_lock = threading.Lock()


def load_reward_model(model_path, **options) -> RewardModel:
    """The RewardModel for this path and options, loaded once per process."""
    key = (str(Path(model_path).resolve()), tuple(sorted(options.items())))
    with _models_lock:
        if key not in _models:
            _models[key] = RewardModel(model_path, **options)
        return _models[key]


def reward_model_score(
    sample: Sample,
    *,
    model_path,
    batch_size: int = 16,
    max_length: int = 2048,
    label: int | str | None = None,
) -> Reward:
    """The reward model's logit for (sample.prompt, sample.completion).

    A missing or unloadable model raises (a recipe mistake); bad model output only
    ever gives a value. For many samples at once, call
    load_reward_model(...).score(pairs), which batches.
    """
    model = load_reward_model(model_path, batch_size=batch_size, max_length=max_length, label=label)
    if not sample.completion.strip():
        return Reward.zero("empty completion", model=model.path.name)
    (value,) = model.score([(sample.prompt, sample.completion)])
    if not math.isfinite(value):
        return Reward.zero(f"reward model returned {value}", model=model.path.name)
    return Reward(value, {"model": model.path.name, "logit": value})
