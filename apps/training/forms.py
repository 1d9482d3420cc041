"""Launch forms for the training jobs: defaults from the DeepSeek-R1 report, validation that names
the field, and a preview of what a launch would do (rows, steps, tokens).

The report's figures (Nature version, supplementary B.4): GRPO with learning rate 3e-6, KL
coefficient 0.001, clip ratio epsilon 10, 16 samples per question at temperature 1, 32
questions (512 completions) per step, 8,192 completions per rollout split into 16 mini-batches,
completions up to 32,768 tokens; the rejection-sampling SFT ran 2 epochs. They suit a 671B model
on a cluster; CPU_PRESETS holds values that train the tiny model on a laptop CPU in minutes.
"""

import math

from django import forms
from django.conf import settings

from apps.datasets.models import Dataset, DatasetVersion, ModelVersion, Prompt
from apps.rollouts.generation import SamplingForm, default_recipe_for
from apps.rollouts.judging import judge_spec
from apps.rollouts.models import RewardRecipe
from workers.training.formats import SFT_FORMATS
from workers.training.spec import (
    LOSS_TYPES,
    LR_SCHEDULERS,
    GRPOSpec,
    LoraSpec,
    SFTSpec,
    TrainSpec,
    default,
    help_text,
)

ACCELERATE_CONFIGS = {
    "cpu": "CPU, one process",
    "single_gpu": "One GPU",
    "multi_gpu_zero2": "All GPUs of a machine, DeepSpeed ZeRO-2",
    "multi_gpu_fsdp": "All GPUs of a machine, FSDP",
    "multi_node": "Several machines, DeepSpeed ZeRO-3",
}

# What the tiny model needs on a 2-core CPU. GRPO's from the sweep in benchmarks/RESULTS.md ("GRPO presets"):
# LR 3e-4 with warmup doubled held-out pass@1 on the miniature's task; 1e-3 without warmup collapsed the model.
CPU_PRESETS = {
    "sft": {"learning_rate": 3e-3, "lr_scheduler": "cosine", "batch_size": 8, "epochs": 1, "max_length": 256,
            "accelerate_config": "cpu"},
    "grpo": {"learning_rate": 3e-4, "lr_scheduler": "linear", "warmup_steps": 10, "loss_type": "dapo",
             "num_generations": 8, "batch_size": 64, "steps_per_generation": 1, "max_completion_length": 64,
             "max_steps": 400, "beta": 0.0, "epsilon": 0.2, "temperature": 1.0, "accelerate_config": "cpu"},
}


class TrainingForm(forms.Form):
    model_version = forms.ModelChoiceField(queryset=ModelVersion.objects.all(), help_text="The model to train")
    stage = forms.ChoiceField(choices=ModelVersion.Stage.choices, help_text="The R1 stage the new model is")
    output_name = forms.CharField(max_length=150, required=False,
                                  help_text="Name of the new model version (default: from the job)")
    learning_rate = forms.FloatField(min_value=0.0, max_value=1.0)
    max_steps = forms.IntegerField(min_value=1, required=False)
    batch_size = forms.IntegerField(min_value=1, help_text="Sequences per optimizer step, over all processes")
    lr_scheduler = forms.ChoiceField(choices=[(s, s) for s in LR_SCHEDULERS],
                                     initial=default(TrainSpec, "lr_scheduler"),
                                     help_text=help_text(TrainSpec, "lr_scheduler"))
    warmup_steps = forms.IntegerField(initial=default(TrainSpec, "warmup_steps"), min_value=0,
                                      help_text=help_text(TrainSpec, "warmup_steps"))
    save_steps = forms.IntegerField(initial=default(TrainSpec, "save_steps"), min_value=0,
                                    help_text=help_text(TrainSpec, "save_steps"))
    seed = forms.IntegerField(initial=default(TrainSpec, "seed"), help_text=help_text(TrainSpec, "seed"))
    use_lora = forms.BooleanField(required=False, initial=False, label="LoRA", help_text=help_text(TrainSpec, "lora"))
    lora_r = forms.IntegerField(initial=default(LoraSpec, "r"), min_value=1, max_value=1024,
                                help_text=help_text(LoraSpec, "r"))
    lora_alpha = forms.IntegerField(initial=default(LoraSpec, "alpha"), min_value=1,
                                    help_text=help_text(LoraSpec, "alpha"))
    accelerate_config = forms.ChoiceField(choices=ACCELERATE_CONFIGS.items(),
                                          initial=lambda: settings.TRAINING_ACCELERATE_CONFIG,
                                          help_text="How `accelerate launch` runs the training")

    def clean(self):
        data = super().clean()
        batch, processes = data.get("batch_size"), training_processes(data.get("accelerate_config") or "cpu")
        if batch and batch % processes:
            self.add_error("batch_size", f"must be a multiple of the {processes} training processes")
        if data.get("output_name") and ModelVersion.objects.filter(name=data["output_name"]).exists():
            self.add_error("output_name", "a model version of this name exists")
        return data


def training_processes(config: str) -> int:
    """Processes per step: 1 on CPU or one GPU, else the GPUs this machine has (or R1_TRAINING_PROCESSES)."""
    if config in ("cpu", "single_gpu"):
        return 1
    return settings.TRAINING_PROCESSES or _gpu_count()


def sft_steps(rows: int, epochs: int, batch_size: int) -> int:
    """Optimizer steps for `epochs` passes: the trainer's data loader ends each pass with a short batch."""
    return max(1, epochs * math.ceil(rows / batch_size))


def _gpu_count() -> int:
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except ImportError:
        return 1


class SFTParamsForm(TrainingForm):
    dataset_version = forms.ModelChoiceField(queryset=DatasetVersion.objects.select_related("dataset"),
                                             help_text="A frozen dataset version")
    format = forms.ChoiceField(choices=SFT_FORMATS.items(), initial=default(SFTSpec, "format"))
    learning_rate = forms.FloatField(initial=5e-5, min_value=0.0, max_value=1.0, help_text="Not given by the report")
    epochs = forms.IntegerField(initial=default(SFTSpec, "epochs"), min_value=1, max_value=100,
                                help_text=help_text(SFTSpec, "epochs"))
    max_steps = forms.IntegerField(min_value=1, required=False, help_text="Overrides epochs")
    batch_size = forms.IntegerField(initial=64, min_value=1, help_text="Examples per optimizer step")
    max_length = forms.IntegerField(initial=default(SFTSpec, "max_length"), min_value=16, max_value=131072,
                                    help_text=help_text(SFTSpec, "max_length"))
    stage = forms.ChoiceField(choices=ModelVersion.Stage.choices, initial=ModelVersion.Stage.COLD_START)

    def preview(self) -> dict:
        data = self.cleaned_data
        version = data["dataset_version"]
        chars = sum(len(m.get("content") or "") for e in version.ordered_examples() for m in e.messages)
        rows = version.example_count
        steps = data.get("max_steps") or sft_steps(rows, data["epochs"], data["batch_size"])
        epochs = steps / math.ceil(rows / data["batch_size"]) if rows else 0  # as the trainer's loader counts them
        return {
            "rows": rows,
            "steps": steps,
            "epochs": round(epochs, 2),
            "tokens to train on (≈ characters / 4)": round(chars / 4 * epochs),
        }


class GRPOParamsForm(TrainingForm):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all(), help_text="Prompts with reference answers")
    limit = forms.IntegerField(required=False, min_value=1, help_text="Only the first N prompts")
    template = SamplingForm.base_fields["template"]
    recipe = forms.ModelChoiceField(queryset=RewardRecipe.objects.all(), required=False,
                                    help_text="Reward recipe (default: the latest r1-zero-math, or r1-chat-math "
                                              "with the chat template)")
    num_generations = forms.IntegerField(initial=default(GRPOSpec, "num_generations"), min_value=2, max_value=1024,
                                         help_text=help_text(GRPOSpec, "num_generations"))
    beta = forms.FloatField(initial=default(GRPOSpec, "beta"), min_value=0.0, label="KL beta",
                            help_text=help_text(GRPOSpec, "beta"))
    epsilon = forms.FloatField(initial=default(GRPOSpec, "epsilon"), min_value=0.0, label="Clip epsilon",
                               help_text=help_text(GRPOSpec, "epsilon"))
    loss_type = forms.ChoiceField(choices=[(t, t) for t in LOSS_TYPES], initial=default(GRPOSpec, "loss_type"),
                                  help_text=help_text(GRPOSpec, "loss_type"))
    learning_rate = forms.FloatField(initial=3e-6, min_value=0.0, max_value=1.0)
    max_completion_length = forms.IntegerField(initial=default(GRPOSpec, "max_completion_length"), min_value=1,
                                               max_value=262144, help_text=help_text(GRPOSpec, "max_completion_length"))
    max_steps = forms.IntegerField(initial=10400, min_value=1, help_text="R1-Zero: 10,400 steps")
    batch_size = forms.IntegerField(initial=512, min_value=1, help_text="Completions per optimizer step")
    steps_per_generation = forms.IntegerField(initial=default(GRPOSpec, "steps_per_generation"), min_value=1,
                                              max_value=1024, help_text=help_text(GRPOSpec, "steps_per_generation"))
    temperature = forms.FloatField(initial=default(GRPOSpec, "temperature"), min_value=0.01, max_value=2.0,
                                   help_text=help_text(GRPOSpec, "temperature"))
    top_p = forms.FloatField(initial=default(GRPOSpec, "top_p"), min_value=0.01, max_value=1.0,
                             help_text=help_text(GRPOSpec, "top_p"))
    use_vllm = forms.BooleanField(required=False, initial=default(GRPOSpec, "use_vllm"),
                                  help_text=help_text(GRPOSpec, "use_vllm"))
    stage = forms.ChoiceField(choices=ModelVersion.Stage.choices, initial=ModelVersion.Stage.R1_ZERO)
    capture_tokens = forms.BooleanField(required=False, initial=default(GRPOSpec, "capture_tokens"),
                                        label="Capture tokens", help_text=help_text(GRPOSpec, "capture_tokens"))
    eval_dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.all(), required=False, label="Evaluate checkpoints on",
        help_text="Held-out prompts: each checkpoint (every save_steps) and the final model get an evaluation job "
                  "of their own, so training is not slowed; the dashboard draws pass@1, pass@k and cons@k by step")
    eval_samples = forms.IntegerField(initial=4, min_value=1, max_value=64,
                                      help_text="Samples per held-out prompt (k) in those evaluations")
    stop_format_at = forms.FloatField(required=False, min_value=0.0, max_value=1.0, label="Stop when format ≥",
                                      help_text=help_text(GRPOSpec, "stop_format_at"))
    stop_falling_steps = forms.IntegerField(initial=default(GRPOSpec, "stop_falling_steps"), min_value=1,
                                            label="… and accuracy falls for (steps)",
                                            help_text=help_text(GRPOSpec, "stop_falling_steps"))

    allow_judge = forms.BooleanField(
        required=False, label="Allow judge in training (slow)",
        help_text="Let a recipe with a judge model (llm_judge) score GRPO's completions: every completion of every "
                  "step waits on a call to the judge")

    clean_template = SamplingForm.clean_template

    def clean(self):
        data = super().clean()
        batch, group = data.get("batch_size"), data.get("num_generations")
        if batch and group and batch % group:
            self.add_error("batch_size", f"must be a multiple of the group size num_generations ({group})")
        if data.get("use_vllm") and data.get("accelerate_config") == "cpu":
            self.add_error("use_vllm", "vLLM needs a GPU: choose a GPU accelerate config")
        if not data.get("recipe"):
            data["recipe"] = RewardRecipe.latest(default_recipe_for("r1-zero-math", data.get("template")))
        if data.get("dataset"):
            self._check_enough_prompts(data)
        if data.get("recipe") and judge_spec(data["recipe"].spec) and not data.get("allow_judge"):
            self.add_error("recipe", f"{data['recipe']} asks a judge model (llm_judge): every completion of every "
                                     "step would wait on a call to it, which is slow. Tick \"Allow judge in training "
                                     "(slow)\" to train with it anyway, or choose a recipe of rule rewards")
        return data

    def _check_enough_prompts(self, data: dict) -> None:
        prompts = self._prompt_count(data)
        if not prompts:
            self.add_error("dataset", f"{data['dataset'].name} has no prompts: import some first "
                                      "(GRPO samples completions of its prompts)")
            return
        batch, group, every = data.get("batch_size"), data.get("num_generations"), data.get("steps_per_generation")
        # TRL samples steps_per_generation batches of prompts at once and drops a last, incomplete draw: with
        # fewer prompts than one draw it trains 0 steps.
        needed = batch * every // group if batch and group and every else 0
        if prompts < needed:
            self.add_error("dataset", f"{data['dataset'].name} gives {prompts} prompts, and one generation draws "
                                      f"{needed} (batch_size {batch} × steps_per_generation {every} / "
                                      f"num_generations {group}): add prompts or lower steps_per_generation")

    @staticmethod
    def _prompt_count(data: dict) -> int:
        prompts = Prompt.objects.filter(dataset=data["dataset"]).count()
        return min(prompts, data["limit"]) if data.get("limit") else prompts

    def preview(self) -> dict:
        data = self.cleaned_data
        prompts = self._prompt_count(data)
        completions = data["max_steps"] * data["batch_size"]
        return {
            "rows": prompts,
            "steps": data["max_steps"],
            "prompts per step": data["batch_size"] // data["num_generations"],
            "completions (each stored as a rollout)": completions,
            "epochs over the prompts": round(completions / data["num_generations"] / prompts, 2) if prompts else 0,
            "tokens to generate (at most)": completions * data["max_completion_length"],
        }
