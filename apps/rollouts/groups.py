"""A rollout's GRPO group (the G samples of one prompt at one step) and word-level diffs between two rollouts."""

import difflib
import re
import statistics
from dataclasses import dataclass

from apps.rollouts.models import Rollout
from workers.hygiene.near_dup import exact_key, jaccard, shingles

DIFF_CHARS = 200_000  # of each text compared; lines past it are left out and the diff says so
BLOCK_WORDS_SQUARED = 3_000 * 3_000  # aligning a changed block's words is quadratic (~1 s here): past it, whole
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


# A word or a symbol with the spaces after it: a lone space token, the commonest of all, made the
# word alignment slow (each match of it is a candidate) without making it better.
_TOKEN = re.compile(r"\w+\s*|[^\w\s]\s*|\s+")
_UNIT = re.compile(r"[^\n.!?]+(?:[.!?]+\s*|\n|$)|[.!?\n]+\s*")  # a line, or a sentence of a long line
_TOKEN_GLUE = re.compile(r"[ \t,;:]{1,3}")  # spaces or a comma between two changes: not "=" or "+" in sums


def word_diff(old: str, new: str) -> Diff:
    """Changed phrases, not changed characters. Sentences and lines are aligned first, then the words
    inside each run of changed ones, and a space or comma between two changes joins them: "the cat
    sat" → "a dog sat" reads as one replaced phrase. (Words alone, past 200 of them, SequenceMatcher's
    autojunk dropped the space between words as noise and the diff fell apart into characters; without
    autojunk, 4,000 words took minutes.)"""
    old_lines, new_lines = _UNIT.findall(old), _UNIT.findall(new)
    truncated = len(old) > DIFF_CHARS or len(new) > DIFF_CHARS
    if truncated:
        old_lines, new_lines = _first_chars(old_lines), _first_chars(new_lines)
    lines = difflib.SequenceMatcher(None, old_lines, new_lines)
    runs = []  # [same_text, removed, added]: same_text None marks a change
    for op, i1, i2, j1, j2 in lines.get_opcodes():
        removed, added = "".join(old_lines[i1:i2]), "".join(new_lines[j1:j2])
        if op == "equal":
            runs.append([removed, "", ""])
        else:
            _word_runs(removed, added, runs)
    pieces = []
    for same, removed, added in runs:
        if same is not None:
            pieces.append(DiffPiece("same", same))
            continue
        if removed:
            pieces.append(DiffPiece("removed", removed))
        if added:
            pieces.append(DiffPiece("added", added))
    return Diff(pieces, truncated, lines.ratio())


def _first_chars(lines: list[str]) -> list[str]:
    kept, size = [], 0
    for line in lines:
        if size + len(line) > DIFF_CHARS:
            kept.append(line[: DIFF_CHARS - size])
            break
        kept.append(line)
        size += len(line)
    return kept


def _word_runs(old: str, new: str, runs: list) -> None:
    """Append the word-level runs of one block of changed lines to `runs`."""
    old_words, new_words = _TOKEN.findall(old), _TOKEN.findall(new)
    if len(old_words) * len(new_words) > BLOCK_WORDS_SQUARED:  # too much changed to align word by word
        runs.append([None, old, new])
        return
    words = difflib.SequenceMatcher(None, old_words, new_words, autojunk=False)
    for op, i1, i2, j1, j2 in words.get_opcodes():
        removed, added = "".join(old_words[i1:i2]), "".join(new_words[j1:j2])
        glue = op == "equal" and i2 < len(old_words) and _TOKEN_GLUE.fullmatch(removed)
        if op == "equal" and not (glue and runs and runs[-1][0] is None):
            runs.append([removed, "", ""])
        elif runs and runs[-1][0] is None:
            runs[-1][1] += removed  # a change after a change, or the space or comma between two changes
            runs[-1][2] += added if op != "equal" else removed
        else:
            runs.append([None, removed, added])
