"""A rollout's GRPO group (the G samples of one prompt at one step) and word-level diffs between two rollouts."""

import difflib
import re
import statistics
from dataclasses import dataclass

from apps.rollouts.models import Rollout

DIFF_TOKENS = 8_000  # SequenceMatcher is quadratic at worst: compare the first 8k words and spaces of each


def group_of(rollout: Rollout) -> list[Rollout]:
    members = list(
        Rollout.objects.filter(job_id=rollout.job_id, prompt_id=rollout.prompt_id, step=rollout.step,
                               group=rollout.group).order_by("sample_index")
    )
    _fill_advantages(members)
    return members


def _fill_advantages(members: list[Rollout]) -> None:
    """Generation jobs store no advantage: give each the group-relative one GRPO would, (r − mean) / std."""
    rewards = [m.total_reward for m in members]
    if any(m.advantage is not None for m in members) or None in rewards or len(rewards) < 2:
        return
    mean, std = statistics.fmean(rewards), statistics.pstdev(rewards)
    for member in members:
        member.advantage = (member.total_reward - mean) / std if std else 0.0
        member.advantage_computed = True


@dataclass
class DiffPiece:
    op: str  # "same", "removed", "added"
    text: str


@dataclass
class Diff:
    pieces: list[DiffPiece]
    truncated: bool
    similarity: float


_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def word_diff(old: str, new: str) -> Diff:
    old_tokens, new_tokens = _TOKEN.findall(old), _TOKEN.findall(new)
    truncated = len(old_tokens) > DIFF_TOKENS or len(new_tokens) > DIFF_TOKENS
    old_tokens, new_tokens = old_tokens[:DIFF_TOKENS], new_tokens[:DIFF_TOKENS]
    matcher = difflib.SequenceMatcher(None, old_tokens, new_tokens)
    pieces = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            pieces.append(DiffPiece("same", "".join(old_tokens[i1:i2])))
            continue
        if i2 > i1:
            pieces.append(DiffPiece("removed", "".join(old_tokens[i1:i2])))
        if j2 > j1:
            pieces.append(DiffPiece("added", "".join(new_tokens[j1:j2])))
    return Diff(pieces, truncated, matcher.ratio())
