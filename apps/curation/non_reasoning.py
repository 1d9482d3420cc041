"""Non-reasoning data in rejection sampling: which samples of non-reasoning prompts are kept, the text
their examples hold, and the counts that mix them with reasoning examples at a chosen share.

As in the R1 report's stage 3, non-reasoning prompts (writing, factual QA, translation, greetings) have
no rule-checkable answer: their samples are never dropped as incorrect. They pass the readability filters
and the length cap, and a judge's verdict when the recipe has one (`llm_judge`, workers/rewards/judge.py).
"""

import math
from fractions import Fraction

from apps.curation.coldstart import cold_start_text
from apps.rollouts.models import Rollout
from apps.rollouts.scoring import sample_for
from workers.rewards.filters import apply_filters, truncated
from workers.rewards.judge import COMPONENT as JUDGE


class ShareNotMet(ValueError):
    """No example of a kind the asked share needs was kept."""


def example_text(rollout: Rollout) -> str:
    """The assistant's text of the example a rollout becomes. A sample asked for the answer only (plain) gets
    an empty think block, so every example of a mix is in the one chat format (<think>…</think>, then the
    answer) and the SFT formats read its reasoning as empty; any other sample is its completion as written."""
    if (rollout.metadata or {}).get("non_reasoning") == "plain":
        return cold_start_text("", rollout.answer)
    return rollout.completion


def drop_reason(rollout: Rollout, filters: list[str]) -> str | None:
    """Why a sample of a non-reasoning prompt is not kept (a short reason, counted by the job), or None."""
    sample = sample_for(rollout.prompt, example_text(rollout), rollout.finish_reason)
    if not truncated(sample).keep:  # whether or not the job's filters name it: a cut-off answer is never kept
        return "truncated"
    judged = (rollout.rewards or {}).get(JUDGE) or {}
    if judged.get("value") == 0.0:  # a judge that gave no verdict (None) decides nothing
        return "judged incorrect"
    verdict = apply_filters(sample, [name for name in filters if name != "truncated"])
    return None if verdict.keep else verdict.reason.split(":", 1)[0]


def mix_counts(reasoning: int, non_reasoning: int, share: float) -> tuple[int, int]:
    """How many (reasoning, non-reasoning) examples make the largest mix with `share` non-reasoning: the short
    side is taken whole and the other sampled down to it (nothing is repeated). ShareNotMet when the share needs
    a kind of which none was kept."""
    wanted = Fraction(share).limit_denominator(10_000)
    if wanted > 0 and non_reasoning == 0:
        raise ShareNotMet(f"a non-reasoning share of {share} needs non-reasoning examples, and none was kept")
    if wanted < 1 and reasoning == 0:
        raise ShareNotMet(f"a non-reasoning share of {share} needs reasoning examples, and none was kept")
    if wanted in (0, 1):
        return (reasoning, 0) if wanted == 0 else (0, non_reasoning)
    total = min(math.floor(reasoning / (1 - wanted)), math.floor(non_reasoning / wanted))
    taken_non_reasoning = min(non_reasoning, math.floor(total * wanted + Fraction(1, 2)))
    return min(reasoning, total - taken_non_reasoning), taken_non_reasoning
