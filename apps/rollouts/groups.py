"""A rollout's GRPO group (the G samples of one prompt at one step) and word-level diffs between two rollouts."""

import difflib
import re
import statistics
from dataclasses import dataclass

from apps.rollouts.models import Rollout
from workers.hygiene.near_dup import exact_key, jaccard, shingles

DIFF_TOKENS = 8_000  # SequenceMatcher is quadratic at worst: compare the first 8k words and spaces of each
NEAR_IDENTICAL = 0.9  # word 5-shingle Jaccard from which two completions of a group count as the same
NEAR_CHARS = 100_000  # of each completion compared for near-identity (shingle sets of 5 MB texts are slow)


def group_of(rollout: Rollout) -> list[Rollout]:
    members = list(
        Rollout.objects.filter(job_id=rollout.job_id, prompt_id=rollout.prompt_id, step=rollout.step,
                               group=rollout.group).order_by("sample_index")
    )
    _fill_advantages(members)
    mark_duplicates(members)
    return members


def mark_duplicates(members: list[Rollout]) -> int:
    """Mark each completion that repeats an earlier sample of the group: `duplicate_of` (the sample
    index of the first with the same normalised text) or `near_duplicate_of` (word 5-shingle Jaccard
    ≥ NEAR_IDENTICAL, with `near_similarity`). Identical completions get identical rewards, so
    between them the advantage says nothing, and a group of copies has none at all. Every member
    also carries the group's count (`group_duplicates`), which the page's header shows."""
    first_with: dict[bytes, int] = {}
    distinct: list[tuple[int, set]] = []
    for member in members:
        member.duplicate_of = member.near_duplicate_of = member.near_similarity = None
        key = exact_key(member.completion)
        if key in first_with:
            member.duplicate_of = first_with[key]
            continue
        first_with[key] = member.sample_index
        own = shingles(member.completion[:NEAR_CHARS])
        for index, other in distinct:
            similarity = jaccard(own, other)
            if similarity >= NEAR_IDENTICAL:
                member.near_duplicate_of, member.near_similarity = index, similarity
                break
        else:
            distinct.append((member.sample_index, own))
    count = sum(m.duplicate_of is not None or m.near_duplicate_of is not None for m in members)
    for member in members:
        member.group_duplicates = count
    return count


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
