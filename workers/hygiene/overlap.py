"""Benchmark contamination by exact n-gram overlap, with the overlapping spans on both sides.

An `OverlapIndex` holds every word n-gram of a few thousand benchmark prompts as a sorted numpy
array of 64-bit hashes (an inverted index: hash → the prompts that contain it). `scan` takes
texts in batches: each batch's words become vocabulary ids in one flat array, every n-word window
is hashed at once with numpy, and `searchsorted` finds the windows that occur in a benchmark. A
word the benchmarks never use cannot be part of a shared n-gram, so windows holding one are
skipped without hashing them into the lookup. Only the few (text, prompt) pairs that share a hash
are then compared word by word, which confirms the overlap exactly (a hash collision finds
nothing) and gives the character spans a reviewer sees highlighted.

Words are those of `workers.hygiene.text`: case, width forms and punctuation do not matter, so
"Find the SUM of 3, 4" and "find the sum of 3 4" share every n-gram, and the spans point into each
text as stored.
"""

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from workers.hashing import mix64
from workers.hygiene.text import word_spans, words

BATCH = 2000  # texts hashed together: large enough for numpy to pay, small enough to hold
_UNKNOWN = -1  # a word no benchmark prompt uses (or the break between two texts)
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd: the window hash is a polynomial in it, mod 2^64
_FILTER_BITS = 24  # a 16 MB table of "some benchmark n-gram has these top bits": most windows stop there
# For ASCII text, `words` is: lower case, every byte but [a-z0-9_] a space, split. bytes.translate does
# that in C at twice the speed of the regex, and most training text is ASCII.
_ASCII_WORD_BYTES = set(b"abcdefghijklmnopqrstuvwxyz0123456789_")
_ASCII_SPACES = bytes(c if c in _ASCII_WORD_BYTES else 32 for c in range(256))


@dataclass(frozen=True)
class Overlap:
    """Text `text` shares `shared` distinct n-grams with benchmark prompt `prompt` (an index into the
    index's prompts); the spans are (start, end) character offsets of the shared words, merged where
    they touch, in the text and in the prompt."""

    text: int
    prompt: int
    shared: int
    text_spans: list[tuple[int, int]]
    prompt_spans: list[tuple[int, int]]


def window_hashes(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The hash of every n-word window of `ids` (int64 vocabulary ids, _UNKNOWN where unknown), and
    the windows' start positions, leaving out windows that hold an unknown word."""
    count = len(ids) - n + 1
    if count <= 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    unknown = np.concatenate(([0], np.cumsum(ids == _UNKNOWN)))
    starts = np.flatnonzero(unknown[n:] - unknown[:count] == 0)
    if len(starts) == 0:
        return np.empty(0, np.uint64), starts
    mixed = mix64(ids.astype(np.uint64) + np.uint64(1))
    # Every window by contiguous slices (cheaper than gathering only the valid ones n times), then the valid.
    hashes = mixed[:count].copy()
    with np.errstate(over="ignore"):
        for offset in range(1, n):
            hashes *= _MULTIPLIER
            hashes += mixed[offset:offset + count]
    return hashes[starts], starts


class OverlapIndex:
    """Every n-gram of the benchmark prompts, by hash, and which prompts hold it."""

    def __init__(self, prompts: Sequence[str], n: int):
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        self.n = n
        self.prompts = list(prompts)
        self.vocabulary: dict[str, int] = {}
        hashes, owners = [], []
        for index, prompt in enumerate(self.prompts):
            ids = np.array([self.vocabulary.setdefault(w, len(self.vocabulary)) for w in words(prompt)], np.int64)
            prompt_hashes = np.unique(window_hashes(ids, n)[0])
            hashes.append(prompt_hashes)
            owners.append(np.full(len(prompt_hashes), index, np.int32))
        hashes = np.concatenate(hashes) if hashes else np.empty(0, np.uint64)
        owners = np.concatenate(owners) if owners else np.empty(0, np.int32)
        order = np.argsort(hashes, kind="stable")
        hashes, self._owners = hashes[order], owners[order]
        # CSR: the prompts holding the i-th distinct hash are _owners[_first[i]:_first[i + 1]].
        self.hashes, self._first = np.unique(hashes, return_index=True)
        self._first = np.append(self._first, len(hashes))
        self._prompt_grams: dict[int, dict[tuple[str, ...], list[int]]] = {}
        self._ascii_vocabulary = {w.encode(): i for w, i in self.vocabulary.items() if w.isascii()}
        self._filter = np.zeros(1 << _FILTER_BITS, bool)
        self._filter[self.hashes >> np.uint64(64 - _FILTER_BITS)] = True

    @property
    def ngram_count(self) -> int:
        return len(self.hashes)

    def memory_bytes(self) -> int:
        return self.hashes.nbytes + self._owners.nbytes + self._first.nbytes

    # -- the fast pass ---------------------------------------------------------------------------

    def candidates(self, texts: Sequence[str]) -> list[dict[int, int]]:
        """For each text, {prompt index: distinct n-gram hashes it shares with that prompt} (only
        prompts sharing at least one)."""
        found: list[dict[int, int]] = [{} for _ in texts]
        if not len(self.hashes) or not texts:
            return found
        flat, text_starts = [], []
        by_str, by_bytes = self.vocabulary.get, self._ascii_vocabulary.get
        for text in texts:
            text_starts.append(len(flat))
            if text.isascii():
                flat.extend(map(by_bytes, text.lower().encode().translate(_ASCII_SPACES).split(), repeat(_UNKNOWN)))
            else:
                flat.extend(map(by_str, words(text), repeat(_UNKNOWN)))
            flat.append(_UNKNOWN)  # no window spans two texts
        hashes, starts = window_hashes(np.array(flat, np.int64), self.n)
        maybe = np.flatnonzero(self._filter[hashes >> np.uint64(64 - _FILTER_BITS)])
        if not len(maybe):
            return found
        hashes, starts = hashes[maybe], starts[maybe]
        at = np.searchsorted(self.hashes, hashes)
        at[at == len(self.hashes)] = 0
        hit = self.hashes[at] == hashes
        if not hit.any():
            return found
        hit_text = np.searchsorted(np.array(text_starts), starts[hit], side="right") - 1
        hit_hash = at[hit]
        # Each (text, distinct hash) once, then every prompt holding that hash.
        pairs = np.unique(np.stack([hit_text, hit_hash], axis=1), axis=0)
        for text, hash_index in pairs.tolist():
            for prompt in self._owners[self._first[hash_index]:self._first[hash_index + 1]].tolist():
                found[text][prompt] = found[text].get(prompt, 0) + 1
        return found

    # -- the exact pass --------------------------------------------------------------------------

    def _grams_of_prompt(self, prompt: int) -> dict[tuple[str, ...], list[int]]:
        grams = self._prompt_grams.get(prompt)
        if grams is None:
            prompt_words = [w for w, _, _ in word_spans(self.prompts[prompt])]
            grams = defaultdict(list)
            for start in range(len(prompt_words) - self.n + 1):
                grams[tuple(prompt_words[start:start + self.n])].append(start)
            self._prompt_grams[prompt] = grams = dict(grams)
        return grams

    def overlap(self, text: str, prompt: int, text_index: int = 0) -> Overlap | None:
        """The exact overlap of `text` with benchmark prompt `prompt`, or None if they share no n-gram."""
        n, grams = self.n, self._grams_of_prompt(prompt)
        spans = word_spans(text)
        text_words = [w for w, _, _ in spans]
        shared: set[tuple[str, ...]] = set()
        text_covered, prompt_covered = set(), set()
        for start in range(len(text_words) - n + 1):
            gram = tuple(text_words[start:start + n])
            prompt_starts = grams.get(gram)
            if prompt_starts is None:
                continue
            shared.add(gram)
            text_covered.update(range(start, start + n))
            for prompt_start in prompt_starts:
                prompt_covered.update(range(prompt_start, prompt_start + n))
        if not shared:
            return None
        prompt_spans = word_spans(self.prompts[prompt])
        return Overlap(text_index, prompt, len(shared), merge_spans(spans, text_covered),
                       merge_spans(prompt_spans, prompt_covered))

    def scan(self, texts: Iterable[str], min_shared: int = 1, batch: int = BATCH) -> Iterator[Overlap]:
        """Every (text, benchmark prompt) pair sharing at least `min_shared` distinct n-grams, with
        spans; `Overlap.text` counts texts from 0 in the order given."""
        offset = 0
        for chunk in _batches(texts, batch):
            for index, found in enumerate(self.candidates(chunk)):
                for prompt, count in sorted(found.items()):
                    if count < min_shared:
                        continue
                    result = self.overlap(chunk[index], prompt, offset + index)
                    if result is not None and result.shared >= min_shared:
                        yield result
            offset += len(chunk)


def merge_spans(spans: list[tuple[str, int, int]], covered: set[int]) -> list[tuple[int, int]]:
    """Character spans of the covered word positions, consecutive words joined into one span (the
    spaces and punctuation between them included)."""
    merged: list[list[int]] = []
    previous = None
    for position in sorted(covered):
        _, start, end = spans[position]
        if previous is not None and position == previous + 1:
            merged[-1][1] = end
        else:
            merged.append([start, end])
        previous = position
    return [(start, end) for start, end in merged]


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def naive_overlaps(texts: Sequence[str], prompts: Sequence[str], n: int,
                   min_shared: int = 1) -> list[tuple[int, int, int]]:
    """The baseline: every text's n-gram set against every prompt's, (text, prompt, shared) for the
    pairs sharing at least `min_shared`. Quadratic; for measuring the index against, and checking it."""
    def grams(text: str) -> set[tuple[str, ...]]:
        w = words(text)
        return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}

    prompt_grams = [grams(p) for p in prompts]
    found = []
    for t, text in enumerate(texts):
        text_grams = grams(text)
        for p, pg in enumerate(prompt_grams):
            shared = len(text_grams & pg)
            if shared >= min_shared:
                found.append((t, p, shared))
    return found
