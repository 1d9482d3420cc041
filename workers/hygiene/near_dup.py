"""Exact and near-duplicate texts: clusters of texts that say the same thing.

Exact duplicates share a hash of their canonical form (`text.canonical`: case, spacing and sentence
punctuation ignored). Near duplicates share most 5-shingles of those tokens (words, and symbols such
as + and =, which change what a worked solution says): MinHash signatures estimate the
Jaccard similarity of two texts' shingle sets, LSH banding proposes candidate pairs, each candidate
is verified by its estimated Jaccard against the threshold, and union-find joins verified pairs into
clusters.

Sized for a million examples on a small machine. Signatures are computed with numpy for a batch of
texts at once, never per text and per permutation in Python: each token is hashed once per batch
(blake2b, stable across processes, so signatures of two runs compare), a shingle's hash is a sum of
its tokens' hashes under position constants, and permutation p of a shingle hash h is the
multiply-shift hash (a_p·h + b_p) >> 32, evaluated for a block of shingles × all permutations and
reduced to per-text minima with `np.minimum.reduceat`. datasketch's `MinHash.bulk` was the other
choice: it builds one Python object per text and hashes shingle by shingle in Python, several times
slower at this size (benchmarks/dedup.py). The LSH layout (bands × rows) is datasketch's, chosen by
`MinHashLSH` to balance false positives and negatives at the threshold; the banding itself is a sort
of each band's hashes, so candidates come from runs of equal hashes without a Python dict of buckets.
"""

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
from datasketch import MinHashLSH

from workers.hygiene.text import canonical, tokens

NUM_PERM = 128
SHINGLE_SIZE = 5
DEFAULT_THRESHOLD = 0.8
SEED = 1
LSH_WEIGHTS = (0.1, 0.9)  # false positives, false negatives: see lsh_layout
BLOCK_ROWS = 1 << 13  # shingles per MinHash block: NUM_PERM × BLOCK_ROWS × 8 bytes (8 MB, cache-sized) in flight
TOKEN_CACHE = 1_000_000  # token hashes remembered between batches (~100 MB at most)
VERIFY_CHUNK = 20_000  # candidate pairs compared per numpy step (two 10 MB row copies)
_U64 = np.uint64


def exact_key(text: str) -> bytes:
    """16 bytes naming the text's canonical form: equal for texts that differ only in case, spacing
    or punctuation."""
    return _key(canonical(text))


def _key(canonical_text: str) -> bytes:
    return hashlib.blake2b(canonical_text.encode(), digest_size=16).digest()


def shingles(text: str, size: int = SHINGLE_SIZE) -> set[tuple[str, ...]]:
    """The text's 5-shingles of tokens (a text shorter than `size` tokens is one shingle): the sets
    whose Jaccard similarity MinHash estimates. For exact comparisons (tests, a naive baseline, a GRPO group)."""
    found = tokens(text)
    if len(found) < size:
        return {tuple(found)} if found else set()
    return {tuple(found[i:i + size]) for i in range(len(found) - size + 1)}


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads a sum of word hashes over all 64 bits."""
    h = h ^ (h >> _U64(30))
    h = h * _U64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> _U64(27))
    h = h * _U64(0x94D049BB133111EB)
    return h ^ (h >> _U64(31))


def _odd_constants(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 2**63, size=n, dtype=np.uint64) * _U64(2) + _U64(1)


class Signer:
    """Exact keys and MinHash signatures for texts, a batch at a time; `add` as often as needed, then
    read `keys`, `signatures` and `lengths` (one row per text added, in order)."""

    def __init__(self, num_perm: int = NUM_PERM, shingle_size: int = SHINGLE_SIZE, seed: int = SEED,
                 minhash: bool = True):
        self.minhash = minhash  # False: exact keys only (an exact run needs no signatures)
        rng = np.random.default_rng(seed)
        self.num_perm, self.shingle_size = num_perm, shingle_size
        self._a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * _U64(2) + _U64(1)  # odd multipliers
        self._b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
        self._position = rng.integers(1, 2**63, size=shingle_size, dtype=np.uint64) * _U64(2) + _U64(1)
        self._keys: list[bytes] = []
        self._token_hashes: dict[str, int] = {}
        self._signatures: list[np.ndarray] = []
        self._lengths: list[np.ndarray] = []

    def add(self, texts: Sequence[str]) -> None:
        if not texts:
            return
        split = [tokens(t) for t in texts]  # one pass over each text serves both the key and the shingles
        self._keys.extend(_key(" ".join(t)) for t in split)
        self._lengths.append(np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts)))
        if self.minhash:
            self._signatures.append(self._sign(split))

    @property
    def keys(self) -> list[bytes]:
        return self._keys

    @property
    def lengths(self) -> np.ndarray:
        return np.concatenate(self._lengths) if self._lengths else np.zeros(0, dtype=np.int64)

    @property
    def signatures(self) -> np.ndarray:
        """(texts, num_perm) uint32; a text with no words has the all-ones row and matches nothing."""
        if len(self._signatures) > 1:
            # Copied into one array a batch at a time, each batch let go once copied: at a million
            # texts a plain concatenate would hold the signatures twice (2 × 512 MB).
            whole = np.empty((sum(len(s) for s in self._signatures), self.num_perm), dtype=np.uint32)
            at = 0
            while self._signatures:
                batch = self._signatures.pop(0)
                whole[at:at + len(batch)] = batch
                at += len(batch)
            self._signatures = [whole]
        return self._signatures[0] if self._signatures else np.zeros((0, self.num_perm), dtype=np.uint32)

    def _sign(self, docs: list[list[str]]) -> np.ndarray:
        every_word = list(chain.from_iterable(docs))
        # Token hashes are kept between batches (most tokens recur), so each batch hashes only its new ones.
        cache = self._token_hashes
        if len(cache) > TOKEN_CACHE:
            cache.clear()
        for token in set(every_word).difference(cache):
            cache[token] = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
        word_hashes = np.fromiter(map(cache.__getitem__, every_word), dtype=np.uint64, count=len(every_word))
        counts = np.fromiter((len(doc) for doc in docs), dtype=np.int64, count=len(docs))
        shingle_hashes, owners = self._shingle_hashes(word_hashes, counts)
        signatures = np.full((len(docs), self.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        a, b = self._a[:, None], self._b[:, None]
        for start in range(0, len(shingle_hashes), BLOCK_ROWS):
            block, block_owners = shingle_hashes[start:start + BLOCK_ROWS], owners[start:start + BLOCK_ROWS]
            # Permutations × shingles, computed in place: the row-major layout makes the per-text
            # minimum a reduceat along contiguous rows (twice as fast as shingles × permutations).
            permuted = np.multiply(a, block[None, :])
            permuted += b
            permuted >>= _U64(32)
            firsts = np.flatnonzero(np.r_[True, block_owners[1:] != block_owners[:-1]])
            minima = np.minimum.reduceat(permuted, firsts, axis=1).T.astype(np.uint32)
            rows = block_owners[firsts]  # a text cut by the block edge gets the minimum of both parts
            signatures[rows] = np.minimum(signatures[rows], minima)
        return signatures

    def _shingle_hashes(self, word_hashes: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One hash per word shingle of every text, and the text each belongs to (ascending)."""
        k = self.shingle_size
        per_text = np.where(counts >= k, counts - k + 1, (counts > 0).astype(np.int64))
        text_starts = np.cumsum(counts) - counts
        owners = np.repeat(np.arange(len(counts)), per_text)
        offsets = np.arange(per_text.sum()) - np.repeat(np.cumsum(per_text) - per_text, per_text)
        starts = np.repeat(text_starts, per_text) + offsets
        ends = np.repeat(text_starts + counts, per_text)
        hashes = np.zeros(len(starts), dtype=np.uint64)
        last = max(len(word_hashes) - 1, 0)
        for j in range(k):
            at = starts + j
            inside = at < ends  # a text shorter than k words is one shingle of what it has
            hashes += np.where(inside, word_hashes[np.minimum(at, last)], _U64(0)) * self._position[j]
        return _mix(hashes), owners


@dataclass
class Cluster:
    members: list[int]  # indices of the texts, ascending
    representative: int
    kind: str  # "exact": every member has one canonical form; "near": some only share most shingles
    similarity: dict[int, float] = field(default_factory=dict)  # each member's to the representative


def lsh_layout(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) that datasketch's MinHashLSH chooses for this threshold, weighing a
    missed pair 9 times a false candidate: every candidate is verified, so a false one costs only a
    comparison. (With equal weights, 0.8 gave 9 bands of 13 rows, which misses a pair at 0.85 one
    time in three; 14 × 9 misses it one time in forty.)"""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
    return lsh.b, lsh.r


def candidate_pairs(signatures: np.ndarray, rows: np.ndarray, threshold: float) -> np.ndarray:
    """(n, 2) index pairs among `rows` sharing at least one LSH band, each bucket as a star from its
    first member (a bucket of m texts gives m − 1 pairs, not m²/2: a million copies of one text must
    not make 10¹² pairs; a true pair missed through a false-positive anchor meets again in another band)."""
    bands, per_band = lsh_layout(threshold, signatures.shape[1])
    pairs = []
    band_constants = _odd_constants(SEED + 1, per_band)
    for band in range(bands):
        block = signatures[rows, band * per_band:(band + 1) * per_band].astype(np.uint64)
        band_hash = _mix((block * band_constants).sum(axis=1, dtype=np.uint64))
        order = np.argsort(band_hash, kind="stable")
        ordered = band_hash[order]
        new_bucket = np.r_[True, ordered[1:] != ordered[:-1]]
        anchor = order[np.maximum.accumulate(np.where(new_bucket, np.arange(len(order)), 0))]
        members = ~new_bucket
        pairs.append(np.stack([rows[anchor[members]], rows[order[members]]], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    found = np.concatenate(pairs)
    return np.unique(np.sort(found, axis=1), axis=0) if len(found) else found


def estimated_jaccard(signatures: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    out = np.empty(len(pairs), dtype=np.float64)
    for start in range(0, len(pairs), VERIFY_CHUNK):
        chunk = pairs[start:start + VERIFY_CHUNK]
        out[start:start + VERIFY_CHUNK] = (signatures[chunk[:, 0]] == signatures[chunk[:, 1]]).mean(axis=1)
    return out


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the lower index roots: clusters read in input order


def find_clusters(signer: Signer, method: str = "near", threshold: float = DEFAULT_THRESHOLD,
                  prefer: str = "first", earlier: int = 0) -> list[Cluster]:
    """Clusters (two or more texts) among everything `signer` holds.

    `method` "exact" joins texts with one canonical form; "near" also joins texts whose estimated
    Jaccard similarity is at least `threshold`. The representative is the first, shortest or longest
    member (`prefer`; ties go to the first). With `earlier` > 0 the first `earlier` texts come from
    earlier versions: only clusters joining one of them to a later text are returned, and the
    representative is the first earlier member, since what was there before is the original.
    """
    if method not in ("exact", "near"):
        raise ValueError(f"method must be 'exact' or 'near', not {method!r}")
    if prefer not in ("first", "shortest", "longest"):
        raise ValueError(f"prefer must be 'first', 'shortest' or 'longest', not {prefer!r}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], not {threshold}")
    keys = signer.keys
    n = len(keys)
    if n == 0:
        return []
    # Exact clusters first: the index of the first text with each canonical form.
    first_of: dict[bytes, int] = {}
    exact_root = np.fromiter((first_of.setdefault(key, i) for i, key in enumerate(keys)), dtype=np.int64, count=n)
    root = exact_root.copy()
    signatures = signer.signatures if method == "near" else None
    if method == "near":
        uniques = np.fromiter(first_of.values(), dtype=np.int64, count=len(first_of))
        has_words = signatures.min(axis=1) != np.iinfo(np.uint32).max  # a reduction: no copy of the signatures
        uniques = uniques[has_words[uniques]]
        pairs = candidate_pairs(signatures, uniques, threshold)
        verified = pairs[estimated_jaccard(signatures, pairs) >= threshold] if len(pairs) else pairs
        if len(verified):
            sets = _UnionFind(n)
            for a, b in verified.tolist():
                sets.union(a, b)
            root = np.fromiter((sets.find(int(r)) for r in exact_root), dtype=np.int64, count=n)
    order = np.argsort(root, kind="stable")
    bounds = np.flatnonzero(np.r_[True, root[order][1:] != root[order][:-1], True])
    lengths = signer.lengths
    clusters = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if end - start < 2:
            continue
        members = order[start:end]  # ascending: a stable sort of indices
        if earlier:
            if members[0] >= earlier or members[-1] < earlier:
                continue
            representative = int(members[0])
        elif prefer == "first":
            representative = int(members[0])
        else:
            chosen = lengths[members]
            representative = int(members[np.argmin(chosen) if prefer == "shortest" else np.argmax(chosen)])
        one_form = bool((exact_root[members] == exact_root[members[0]]).all())
        similarity = {}
        for member in members.tolist():
            if exact_root[member] == exact_root[representative]:
                similarity[member] = 1.0
            else:
                similarity[member] = float((signatures[member] == signatures[representative]).mean())
        clusters.append(Cluster(members.tolist(), representative, "exact" if one_form else "near", similarity))
    return clusters


def cluster_texts(texts: Iterable[str], method: str = "near", threshold: float = DEFAULT_THRESHOLD,
                  prefer: str = "first", earlier: int = 0, batch: int = 2000, **signer_options) -> list[Cluster]:
    """`find_clusters` over a sequence of texts, signed `batch` at a time."""
    signer = Signer(minhash=method == "near", **signer_options)
    pending: list[str] = []
    for text in texts:
        pending.append(text)
        if len(pending) >= batch:
            signer.add(pending)
            pending = []
    signer.add(pending)
    return find_clusters(signer, method, threshold, prefer, earlier)
