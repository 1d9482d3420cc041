"""The one place a Rollout row is assembled, for generation, scoring, ingest and training alike.

The ML layer (workers/) returns completions and scores; which columns they fill is this module's
business: the text-derived columns (reasoning, answer, reflection, shape flags) and the reward
columns people filter on (total, is_correct, format_ok, language consistency).
"""

from workers.rewards.extract import split_completion
from workers.rewards.recipes import correctness
from workers.rewards.shape import shape_flags

REFLECTION_WORDS = ("wait", "re-check", "recheck", "alternatively", "let me check", "double-check")


def completion_fields(text: str, reasoning: str | None = None) -> dict:
    """The Rollout columns derived from a completion's text (reasoning given apart by some APIs)."""
    think, answer = split_completion(text)
    reasoning = reasoning or think
    return {"reasoning": reasoning, "answer": answer, "length_chars": len(text),
            "has_reflection": any(word in text.lower() for word in REFLECTION_WORDS),
            "shape_flags": shape_flags(text, reasoning, answer)}


def reward_columns(scored: dict) -> dict:
    """The stored reward columns of a Rollout, from a recipe's score ({"total", "components"[, "error"]})."""
    components = scored["components"]
    fmt = components.get("format") or components.get("think_format")
    language = components.get("language_consistency")
    return {
        "total_reward": scored["total"],
        "rewards": components if "error" not in scored
        else {"error": {"value": 0.0, "details": {"reason": scored["error"]}}},
        "is_correct": correctness(components),
        "format_ok": None if fmt is None else fmt["value"] >= 1.0,
        "language_consistency": None if language is None else language["value"],
    }


def rollout_row(*, job_id: int, prompt_id: int, completion: str, reasoning: str | None = None,
                scored: dict | None = None, **columns) -> dict:
    """A row for bulk_insert(Rollout, ...): the given columns (model_version_id, step, group, sample_index,
    prompt_text, token counts, finish_reason, advantage, reward columns...), the columns derived from the
    completion, and the reward columns of `scored` when a recipe scored it."""
    row = {"job_id": job_id, "prompt_id": prompt_id, "completion": completion, **columns,
           **completion_fields(completion, reasoning)}
    if scored is not None:
        row |= reward_columns(scored)
    return row
