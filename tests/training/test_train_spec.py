"""The typed training spec: one place for each default, a JSON round trip the trainer reads back
exactly, and bad combinations refused before a trainer process starts."""

import dataclasses

import pytest

from apps.training.forms import GRPOParamsForm, SFTParamsForm
from workers.rewards.recipes import DEFAULT_RECIPES
from workers.training.spec import GRPOSpec, LoraSpec, SFTSpec, SpecError, TrainSpec, default

RECIPE = DEFAULT_RECIPES["r1-zero-math"]


def grpo_spec(**changes) -> TrainSpec:
    grpo = GRPOSpec(recipe=RECIPE, num_generations=4)
    spec = TrainSpec(kind="grpo", model_path="/m", data_path="/d.jsonl", run_dir="/r", checkpoint_dir="/r/c",
                     final_dir="/r/f", max_steps=10, learning_rate=1e-4, per_device_batch_size=8, grpo=grpo)
    return dataclasses.replace(spec, **changes)


def test_the_json_the_job_writes_is_the_spec_the_trainer_reads():
    spec = grpo_spec(lora=LoraSpec(r=8, alpha=16), resume_from="/r/c/checkpoint-4")
    assert TrainSpec.from_json(spec.to_json()) == spec
    sft = dataclasses.replace(spec, kind="sft", grpo=None, sft=SFTSpec(format="cold_start"), lora=None)
    assert TrainSpec.from_json(sft.to_json()) == sft


def test_the_forms_take_their_defaults_from_the_spec():
    """The form, the JSON and the trainer once disagreed (max_length 2048 vs 4096, steps_per_generation 1 vs 16)."""
    grpo, sft = GRPOParamsForm.base_fields, SFTParamsForm.base_fields
    for name in ("num_generations", "steps_per_generation", "max_completion_length", "temperature", "top_p", "beta",
                 "epsilon", "loss_type"):
        assert grpo[name].initial == default(GRPOSpec, name), name
    for name in ("max_length", "epochs", "format"):
        assert sft[name].initial == default(SFTSpec, name), name
    assert (sft["max_length"].initial, grpo["steps_per_generation"].initial) == (4096, 16)
    assert grpo["num_generations"].help_text == "G: the group size, completions sampled per prompt"


@pytest.mark.parametrize("changes, named", [
    ({"kind": "ppo"}, "kind"),
    ({"kind": "sft"}, "needs its own section"),
    ({"learning_rate": 3.0}, "learning_rate"),
    ({"lr_scheduler": "cosine_with_restarts"}, "lr_scheduler"),
    ({"per_device_batch_size": 6}, "multiple of grpo.num_generations (4)"),
    ({"max_steps": 0}, "max_steps"),
])
def test_bad_combinations_are_refused_naming_the_field(changes, named):
    with pytest.raises(SpecError, match=named.replace("(", r"\(").replace(")", r"\)")):
        grpo_spec(**changes)


@pytest.mark.parametrize("changes, named", [
    ({"num_generations": 1}, "num_generations"),
    ({"loss_type": "ppo"}, "loss_type"),
    ({"temperature": 0.0}, "temperature"),
    ({"recipe": {"components": []}}, "recipe"),
])
def test_bad_grpo_settings_are_refused_naming_the_field(changes, named):
    with pytest.raises(SpecError, match=named):
        GRPOSpec(**{"recipe": RECIPE, **changes})
