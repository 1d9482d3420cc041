"""Suspicious shapes of a completion: the usual signs of reward hacking.

Computed once when a rollout is written and stored as bits, so a run page can
count high-reward rollouts of each shape per step without reading their text
again. A truncated completion (finish reason "length") is the fourth sign and
needs no bit.
"""

from .extract import MAX_SCAN_CHARS, THINK_OPEN
from .shaping import repeated_ngram_share

SHORT_REASONING = 1
REPEATED_TEXT = 2
OUTSIDE_TEMPLATE = 4

FLAG_LABELS = {
    SHORT_REASONING: "answer with almost no reasoning",
    REPEATED_TEXT: "repeated text",
    OUTSIDE_TEMPLATE: "text outside the template",
}

MIN_REASONING_CHARS = 40
REPEATED_SHARE = 0.5  # half of all word 3-grams are repeats
MIN_NGRAMS = 30  # too short to call repetitive


def shape_flags(completion: str, reasoning: str, answer: str) -> int:
    flags = 0
    if answer and len(reasoning.strip()) < MIN_REASONING_CHARS:
        flags |= SHORT_REASONING
    share, ngrams = repeated_ngram_share(completion, 3)
    if ngrams >= MIN_NGRAMS and share >= REPEATED_SHARE:
        flags |= REPEATED_TEXT
    if _outside_template(completion):
        flags |= OUTSIDE_TEMPLATE
    return flags


def flag_labels(flags: int) -> list[str]:
    return [label for bit, label in FLAG_LABELS.items() if flags & bit]


def _outside_template(completion: str) -> bool:
    """Text after the last </answer>, or before an opening <think>."""
    tail = completion[-MAX_SCAN_CHARS:]
    end = tail.rfind("</answer>")
    if end != -1 and tail[end + len("</answer>"):].strip():
        return True
    start = completion.find(THINK_OPEN)
    return start > 0 and bool(completion[:start].strip())
