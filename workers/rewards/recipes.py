"""Reward recipes: a named, weighted set of components with parameters.

The same `Recipe.score(sample)` serves the scoring job, rejection sampling and
GRPO. A spec is plain JSON, so it can be stored in the database and versioned
by its content hash:

    {"components": [
        {"name": "math_accuracy", "weight": 1.0},
        {"name": "format", "weight": 1.0, "params": {"partial_credit": false}},
        {"name": "reward_model", "weight": 1.0, "domains": ["general"], "params": {"model_path": "..."}}
    ]}

`llm_judge` asks a judge model (workers.rewards.judge); its verdicts are attached to the samples
before the recipe runs, and a recipe has at most one.

A component with `domains` applies only to samples of those domains (all-scenario
RL mixes rule rewards for reasoning prompts with a reward model for general ones).
"""

import hashlib
import importlib
import inspect
import json
from dataclasses import dataclass, field
from functools import cache

from workers.rewards.base import Reward, Sample
from workers.rewards.judge import COMPONENT as JUDGE
from workers.rewards.judge import check_params as check_judge_params

COMPONENTS = {
    "math_accuracy": "workers.rewards.accuracy.math_accuracy",
    "code_accuracy": "workers.rewards.code.code_accuracy",
    "format": "workers.rewards.format.format_reward",
    "think_format": "workers.rewards.format.think_format",
    "language_consistency": "workers.rewards.language.language_consistency",
    "cosine_length": "workers.rewards.shaping.cosine_length",
    "repetition_penalty": "workers.rewards.shaping.repetition_penalty",
    "reward_model": "workers.rewards.reward_model.reward_model_score",
    "llm_judge": "workers.rewards.judge.judge_component",
}
ACCURACY_COMPONENTS = ("math_accuracy", "code_accuracy", "llm_judge")

DEFAULT_RECIPES = {
    # R1-Zero: rule rewards only, accuracy and format.
    "r1-zero-math": {"components": [{"name": "math_accuracy", "weight": 1.0}, {"name": "format", "weight": 1.0}]},
    "r1-zero-code": {"components": [{"name": "code_accuracy", "weight": 1.0}, {"name": "format", "weight": 1.0}]},
    # R1 and its distilled models in chat: reasoning closed by </think>, then the answer (\\boxed{} for math).
    "r1-chat-math": {"components": [{"name": "math_accuracy", "weight": 1.0}, {"name": "think_format", "weight": 1.0}]},
    # Reasoning RL: accuracy plus the language-consistency reward, summed.
    "r1-reasoning-math": {
        "components": [
            {"name": "math_accuracy", "weight": 1.0},
            {"name": "format", "weight": 1.0},
            {"name": "language_consistency", "weight": 1.0},
        ]
    },
}


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    weight: float = 1.0
    params: dict = field(default_factory=dict)
    domains: tuple[str, ...] = ()  # empty: every domain

    def applies_to(self, sample: Sample) -> bool:
        return not self.domains or sample.domain in self.domains


def accepted_params(name: str) -> set[str]:
    """The keyword-only parameters of a component: what a recipe's params may set."""
    signature = inspect.signature(component_function(name))
    return {p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


@cache
def component_function(name: str):
    module, _, attr = COMPONENTS[name].rpartition(".")
    return getattr(importlib.import_module(module), attr)


class RecipeError(ValueError):
    pass


@dataclass(frozen=True)
class Recipe:
    components: tuple[ComponentSpec, ...]

    @classmethod
    def from_spec(cls, spec: dict) -> "Recipe":
        """Validate a JSON spec; errors name the component and field."""
        if not isinstance(spec, dict) or not isinstance(spec.get("components"), list) or not spec["components"]:
            raise RecipeError("a recipe needs a non-empty list 'components'")
        components = []
        for i, raw in enumerate(spec["components"]):
            where = f"components[{i}]"
            if not isinstance(raw, dict) or raw.get("name") not in COMPONENTS:
                raise RecipeError(f"{where}: 'name' must be one of {', '.join(sorted(COMPONENTS))}")
            unknown = set(raw) - {"name", "weight", "params", "domains"}
            if unknown:
                raise RecipeError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
            weight = raw.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise RecipeError(f"{where}: 'weight' must be a number")
            params = raw.get("params", {})
            if not isinstance(params, dict):
                raise RecipeError(f"{where}: 'params' must be an object")
            unknown_params = set(params) - accepted_params(raw["name"])
            if unknown_params:
                raise RecipeError(f"{where}: unknown param(s) {', '.join(sorted(unknown_params))} for {raw['name']}")
            domains = raw.get("domains", [])
            if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
                raise RecipeError(f"{where}: 'domains' must be a list of strings")
            if raw["name"] == "cosine_length" and not any(c.name in ACCURACY_COMPONENTS for c in components):
                raise RecipeError(f"{where}: cosine_length needs math_accuracy or code_accuracy before it")
            if raw["name"] == JUDGE:
                if any(c.name == JUDGE for c in components):
                    raise RecipeError(f"{where}: a recipe may have one llm_judge component")
                if problem := check_judge_params(params):
                    raise RecipeError(f"{where}: {problem}")
            components.append(ComponentSpec(raw["name"], float(weight), params, tuple(domains)))
        return cls(tuple(components))

    def to_spec(self) -> dict:
        return {
            "components": [
                {"name": c.name, "weight": c.weight, "params": c.params,
                 **({"domains": list(c.domains)} if c.domains else {})}
                for c in self.components
            ]
        }

    @property
    def content_hash(self) -> str:
        canonical = json.dumps(self.to_spec(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def score(self, sample: Sample) -> dict:
        """{"total": float, "components": {name: {"value", "weight", "details"}}}."""
        components, total = {}, 0.0
        for spec in self.components:
            if not spec.applies_to(sample):
                continue
            params = dict(spec.params)
            if spec.name == "cosine_length":  # length shaping depends on the accuracy graded before it
                params.setdefault("is_correct", correctness(components))
            if params.get("is_correct", False) is None:
                reward = Reward.zero("no accuracy component scored this sample before cosine_length")
            else:
                reward = component_function(spec.name)(sample, **params)
            components[spec.name] = {"value": reward.value, "weight": spec.weight, "details": reward.details}
            if reward.value is not None:  # no score (a judge without a verdict) adds nothing
                total += spec.weight * reward.value
        return {"total": total, "components": components}


def correctness(components: dict) -> bool | None:
    """Whether the first accuracy component that scored a sample says it is right (None: none scored it, or it
    gave no score)."""
    for name in ACCURACY_COMPONENTS:
        if name in components:
            value = components[name]["value"]
            return None if value is None else value >= 1.0
    return None
