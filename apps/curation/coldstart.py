"""The cold-start format that people rewrite rollouts into.

The R1 report's `|special_token|<reasoning_process>|special_token|<summary>`, with
`<think>` tags as the special tokens: what the SFT trainer and the accuracy and
format rewards read.
"""

import re

_TAGS = re.compile(r"</?think>|</?answer>")
_ANSWER_BLOCK = re.compile(r"<answer>.*?(?:</answer>|$)", re.DOTALL)


def cold_start_text(reasoning: str, summary: str) -> str:
    return f"<think>\n{reasoning}\n</think>\n\n{summary}"


def split_for_editing(rollout) -> tuple[str, str]:
    """The (reasoning, summary) an editor starts from: the rollout's reasoning and its answer.

    A completion without a <think> block is all reasoning, less its <answer> block (the summary)
    and any stray tags, so the editor never starts with tags the final text adds again.
    """
    summary = (rollout.answer or "").strip()
    reasoning = (rollout.reasoning or "").strip()
    if not reasoning:
        reasoning = _TAGS.sub("", _ANSWER_BLOCK.sub("", rollout.completion or "")).strip()
    return reasoning, summary


def is_unchanged(rollout, reasoning: str, summary: str) -> bool:
    """Whether a rewrite is the text the editor started from: saving it as an edit would record a decision
    nobody made (the model's text, reformatted, counted as a person's rewrite)."""
    rewrite = (reasoning.replace("\r\n", "\n").strip(), summary.replace("\r\n", "\n").strip())
    return rewrite == split_for_editing(rollout)
