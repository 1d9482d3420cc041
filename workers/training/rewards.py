"""A reward recipe as TRL reward functions, and the record of every scored completion.

TRL calls each reward function with the same batch in turn. The first call
scores the whole recipe once (in a ScoringPool: hostile output cannot hang or
crash the trainer) and the others read their component from that result, so
TRL logs each component's mean and std while R1 Studio keeps the details
(extracted answer, why it failed) for every rollout. No Django here.
"""

import json

from workers.rewards.base import Sample
from workers.rewards.recipes import Recipe


class RecipeRewards:
    def __init__(self, recipe_spec: dict, pool, eos_token_ids: list[int], max_completion_length: int):
        self.recipe = Recipe.from_spec(recipe_spec)
        self.pool = pool
        self.eos_token_ids = set(eos_token_ids)
        self.max_completion_length = max_completion_length
        self.batch = None  # the completions list last scored, and what it got
        self.samples: list[Sample] = []
        self.scored: list[dict] = []

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.recipe.components]

    @property
    def weights(self) -> list[float]:
        return [c.weight for c in self.recipe.components]

    def functions(self) -> list:
        return [self._component(name) for name in self.names]

    def _component(self, name: str):
        def reward(prompts, completions, completion_ids, **columns):
            scored = self.score(prompts, completions, completion_ids, columns)
            # None where the component does not apply (another domain) or scoring failed:
            # TRL leaves it out of the group baseline rather than counting a 0.
            return [s["components"][name]["value"] if name in s["components"] else None for s in scored]

        reward.__name__ = name  # TRL logs rewards/<name>/mean
        return reward

    def score(self, prompts, completions, completion_ids, columns) -> list[dict]:
        if completions is not self.batch:
            self.batch = completions
            self.samples = [
                Sample(
                    completion=_text(completion),
                    reference=columns["reference"][i] or "",
                    tests=tuple(json.loads(columns["tests"][i] or "[]")),  # JSON: Arrow wants one schema
                    prompt=columns["question"][i],
                    domain=columns["domain"][i],
                    language=columns["language"][i],
                    finish_reason=self.finish_reason(completion_ids[i]),
                )
                for i, completion in enumerate(completions)
            ]
            self.scored = list(self.pool.map(self.samples))
        return self.scored

    def finish_reason(self, ids: list[int]) -> str:
        if ids and ids[-1] in self.eos_token_ids:
            return "stop"
        return "length" if len(ids) >= self.max_completion_length else "stop"


def _text(completion) -> str:
    """Plain-text prompts give strings; chat prompts give [{"role": "assistant", "content": ...}]."""
    if isinstance(completion, str):
        return completion
    return "".join(message.get("content") or "" for message in completion)
