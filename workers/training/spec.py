"""The training spec: what the supervising job (apps.training.training) hands the trainer process.

One dataclass per concern, each field with its help and its default, so that a default lives in one
place: the launch forms take their initial values and help from here, the job writes the spec as
JSON, and the trainer (workers.training.train) reads it back into these classes. `__post_init__`
refuses bad combinations before a process is started, as TRL's GRPOConfig does for its own.

The defaults are the DeepSeek-R1 report's where it gives one (R1-Zero: 16 samples per question,
32,768 completion tokens, 10,400 steps; stage-3 SFT: 2 epochs); CPU presets live with the forms.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from workers.training.formats import SFT_FORMATS

LOSS_TYPES = ("grpo", "dapo", "dr_grpo", "bnpo")
LR_SCHEDULERS = ("constant_with_warmup", "cosine", "linear")


def _field(default, help: str, **kwargs):
    return field(default=default, metadata={"help": help}, **kwargs)


def default(cls, name: str):
    """A field's default, for a form's `initial`."""
    return cls.__dataclass_fields__[name].default


def help_text(cls, name: str) -> str:
    return cls.__dataclass_fields__[name].metadata.get("help", "")


class SpecError(ValueError):
    """A spec that no trainer should be started with; the message names the field."""


@dataclass(frozen=True)
class LoraSpec:
    r: int = _field(16, "LoRA rank")
    alpha: int = _field(32, "LoRA alpha (scale = alpha / r)")
    dropout: float = _field(0.0, "LoRA dropout")

    def __post_init__(self):
        if self.r < 1 or self.alpha < 1:
            raise SpecError("lora: r and alpha must be at least 1")


@dataclass(frozen=True)
class SFTSpec:
    format: str = _field("chat", "How examples become training text (workers.training.formats)")
    max_length: int = _field(4096, "Tokens per example (longer ones are truncated)")
    epochs: int = _field(2, "Passes over the data (R1 stage 3: 2 epochs)")

    def __post_init__(self):
        if self.format not in SFT_FORMATS:
            raise SpecError(f"sft.format: {self.format!r} is not one of {', '.join(SFT_FORMATS)}")
        if self.max_length < 16 or self.epochs < 1:
            raise SpecError("sft: max_length must be at least 16 and epochs at least 1")


@dataclass(frozen=True)
class GRPOSpec:
    recipe: dict = _field(None, "The reward recipe's spec (workers.rewards.recipes)")
    num_generations: int = _field(16, "G: the group size, completions sampled per prompt")
    steps_per_generation: int = _field(16, "Optimizer steps per batch of generated completions")
    max_completion_length: int = _field(32768, "Tokens per completion at most")
    temperature: float = _field(1.0, "Sampling temperature of the rollouts")
    top_p: float = _field(1.0, "Nucleus sampling of the rollouts")
    beta: float = _field(0.001, "KL coefficient against the reference model (0: no reference model)")
    epsilon: float = _field(10.0, "Clip epsilon of the policy ratio")
    loss_type: str = _field("grpo", "grpo, dapo, dr_grpo or bnpo (how token losses are averaged)")
    use_vllm: bool = _field(False, "Generate with vLLM, colocated (GPU workers)")
    judge: dict | None = _field(None, "The recipe's judge model as the app resolved it (workers.rewards.judge."
                                      "make_judge); its answers are cached in memory, for the run only")
    scoring_processes: int = _field(1, "Processes scoring completions with the recipe")
    scoring_timeout_s: float = _field(20.0, "Seconds one completion may take to score")
    record_rollouts: bool = _field(True, "Store every scored completion as a rollout")
    capture_tokens: bool = _field(
        True, "Store each completion token's log-probability and entropy with its rollout, as TRL's own forward "
              "pass computed them (the token lens; about 8 bytes a token)")
    stop_format_at: float | None = _field(
        None, "Stop when the format reward is at least this and accuracy keeps falling (empty: never)")
    stop_falling_steps: int = _field(10, "Steps accuracy must stay below its best before the stop rule acts")

    def __post_init__(self):
        if not isinstance(self.recipe, dict) or not self.recipe.get("components"):
            raise SpecError("grpo.recipe: a reward recipe with at least one component is required")
        if self.num_generations < 2:
            raise SpecError("grpo.num_generations: at least 2, or every advantage is zero")
        if self.loss_type not in LOSS_TYPES:
            raise SpecError(f"grpo.loss_type: {self.loss_type!r} is not one of {', '.join(LOSS_TYPES)}")
        if not 0 < self.temperature <= 2 or not 0 < self.top_p <= 1:
            raise SpecError("grpo: temperature must be in (0, 2] and top_p in (0, 1]")
        if self.stop_format_at is not None and (not 0 <= self.stop_format_at <= 1 or self.stop_falling_steps < 1):
            raise SpecError("grpo: stop_format_at must be in [0, 1] and stop_falling_steps at least 1")
        if self.beta < 0 or self.epsilon < 0 or self.max_completion_length < 1 or self.steps_per_generation < 1:
            raise SpecError("grpo: beta and epsilon must be non-negative, lengths and steps positive")


@dataclass(frozen=True)
class TrainSpec:
    kind: str  # "sft" or "grpo"
    model_path: str  # a transformers folder or hub id
    data_path: str  # JSONL written by the job: examples (SFT) or prompts with references (GRPO)
    run_dir: str
    checkpoint_dir: str
    final_dir: str
    max_steps: int
    learning_rate: float
    per_device_batch_size: int
    processes: int = _field(1, "Training processes (one per GPU); the global batch is per_device × processes")
    lr_scheduler: str = _field("constant_with_warmup", "Learning-rate schedule")
    warmup_steps: int = _field(0, "Steps of linear warmup")
    save_steps: int = _field(100, "Checkpoint every N steps (0: only the end)")
    seed: int = _field(0, "Seed of data order, initialisation of new weights and sampling")
    use_cpu: bool = _field(True, "Train on the CPU even where a GPU is seen")
    resume_from: str | None = _field(None, "A checkpoint folder to resume from")
    lora: LoraSpec | None = _field(None, "Train LoRA adapters instead of every weight")
    sft: SFTSpec | None = None
    grpo: GRPOSpec | None = None

    def __post_init__(self):
        if self.kind not in ("sft", "grpo"):
            raise SpecError(f"kind: {self.kind!r} is not sft or grpo")
        if (self.kind == "sft") != (self.sft is not None) or (self.kind == "grpo") != (self.grpo is not None):
            raise SpecError(f"a {self.kind} spec needs its own section ({self.kind}) and no other")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise SpecError(f"lr_scheduler: {self.lr_scheduler!r} is not one of {', '.join(LR_SCHEDULERS)}")
        if self.max_steps < 1 or self.per_device_batch_size < 1 or self.processes < 1:
            raise SpecError("max_steps, per_device_batch_size and processes must be at least 1")
        if not 0 <= self.learning_rate <= 1:
            raise SpecError(f"learning_rate: {self.learning_rate} is outside [0, 1]")
        if self.grpo and (self.per_device_batch_size * self.processes) % self.grpo.num_generations:
            raise SpecError(f"the global batch ({self.per_device_batch_size * self.processes} completions) must be "
                            f"a multiple of grpo.num_generations ({self.grpo.num_generations})")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "TrainSpec":
        data: dict[str, Any] = json.loads(text)
        sections = {"lora": LoraSpec, "sft": SFTSpec, "grpo": GRPOSpec}
        for name, section in sections.items():
            if data.get(name) is not None:
                data[name] = section(**data[name])
        return cls(**data)
