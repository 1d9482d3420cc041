"""Length and repetition shaping from "Demystifying Long Chain-of-Thought Reasoning in LLMs" (Yeo et al. 2025).

cosine_length needs to know whether the answer is right. It takes that as the
keyword `is_correct` (a bool, or the value of the accuracy component: correct
when >= 1.0) instead of a callable that would grade the answer again: the recipe
runs the accuracy component first and passes its result on, so each answer is
graded once and the parameters stay plain JSON.

Length is the number of whitespace-separated tokens of the whole completion
(unit="words"), or its characters (unit="chars"). A model's tokens are about
0.75 words in English, so set max_len in the same unit as you think of the cap.
"""

import math

from .base import Reward, Sample

MAX_SCAN_CHARS = 1_000_000  # repetition is measured on the last million characters


def cosine_scale(length: float, max_len: float, start: float, end: float) -> float:
    """`start` at length 0, `end` at max_len, following half a cosine between (flat at both ends).

    Lengths outside [0, max_len] are clamped.
    """
    progress = min(max(length / max_len, 0.0), 1.0) if max_len > 0 else 1.0
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))


def cosine_length(
    sample: Sample,
    *,
    is_correct: bool | float,
    max_len: int = 1000,
    correct_at_0: float = 1.0,
    correct_at_max: float = 0.5,
    wrong_at_0: float = -1.0,
    wrong_at_max: float = -0.5,
    exceed_penalty: float = -1.0,
    unit: str = "words",
) -> Reward:
    """Cosine length-scaled correctness reward.

    A correct answer earns correct_at_0 when short, falling to correct_at_max at
    max_len (shorter is better). A wrong answer earns wrong_at_0 when short,
    rising to wrong_at_max at max_len (a long attempt is penalised less than a
    short guess, which encourages thinking longer when unsure). A completion
    longer than max_len, or cut off (finish_reason == "length"), gets
    exceed_penalty whatever its answer. Defaults are open-r1's
    get_cosine_scaled_reward's; the paper's are correct 2 → 1, wrong -10 → 0,
    exceed -10.
    """
    correct = float(is_correct) >= 1.0  # True, or an accuracy value of 1.0
    length = completion_length(sample.completion, unit)
    details = {"length": length, "unit": unit, "max_len": max_len, "correct": correct}
    if sample.finish_reason == "length" or length > max_len:
        why = "cut off at the length limit" if sample.finish_reason == "length" else f"longer than {max_len:,} {unit}"
        return Reward(exceed_penalty, {**details, "reason": why})
    start, end = (correct_at_0, correct_at_max) if correct else (wrong_at_0, wrong_at_max)
    return Reward(cosine_scale(length, max_len, start, end), details)


def completion_length(text: str, unit: str = "words") -> int:
    if unit == "words":
        return len(text.split())
    if unit == "chars":
        return len(text)
    raise ValueError(f"unit must be 'words' or 'chars', not {unit!r}")


def repetition_penalty(sample: Sample, *, ngram: int = 3, max_penalty: float = -1.0) -> Reward:
    """max_penalty × the share of repeated word n-grams: 0 for no repeat, max_penalty when all repeat.

    As open-r1's get_repetition_penalty_reward: words are lower-cased and split on
    whitespace; share = 1 − distinct n-grams / all n-grams. Completions with fewer
    than `ngram` words get 0.
    """
    if max_penalty > 0:
        raise ValueError(f"max_penalty must be <= 0, not {max_penalty}")
    repeated_share, total = repeated_ngram_share(sample.completion, ngram)
    if total <= 0:
        return Reward(0.0, {"ngrams": 0, "reason": f"fewer than {ngram} words"})
    value = repeated_share * max_penalty if repeated_share else 0.0  # not -0.0
    return Reward(value, {"ngrams": total, "repeated_share": round(repeated_share, 4)})


def repeated_ngram_share(text: str, ngram: int) -> tuple[float, int]:
    """(1 − distinct / all lower-cased word n-grams, how many n-grams) over the last million characters."""
    words = text[-MAX_SCAN_CHARS:].lower().split()
    total = len(words) - ngram + 1
    if total <= 0:
        return 0.0, 0
    distinct = len(set(zip(*(words[i:] for i in range(ngram)))))
    return 1.0 - distinct / total, total
