"""Per-token traces of a completion: what was sampled, how likely it was, how unsure the model was.

A `TokenTrace` holds, per generated token: its id, its log-probability, the entropy of the
distribution it was drawn from, and optionally the top-k alternatives (ids and log-probabilities,
k ≤ 5), plus the raw bytes of every token it names, so a page can draw the tokens without the
model's tokenizer. `columns()` packs it into the compact arrays the RolloutTokens table stores
(little-endian int32 ids, float16 log-probs and entropies: 8 bytes a token, 38 with top-5) with
the per-rollout summaries people filter on; `from_columns()` reads them back. No Django here:
the generation backends and the trainer build traces, the app stores them.

Where the numbers come from differs by source, and `entropy_kind` says which:

- "sampling": the distribution actually sampled from, after temperature and top-p (the
  transformers backend; greedy decoding: the raw distribution).
- "tempered": softmax(logits / temperature) over the whole vocabulary, before top-p (GRPO: what
  TRL's loss computes; the same as "sampling" at TRL's default top_p=1.0).
- "top_k": estimated from the top-k log-probabilities a server returned, renormalised to sum
  to one (an OpenAI-compatible server): a lower bound of the real entropy, exact only when the
  top k hold all the mass.
- "source": as an ingested file gave it.
"""

import base64
import re
import struct
from dataclasses import dataclass, field

import numpy as np

MAX_TOP_K = 5
ENTROPY_KINDS = ("sampling", "tempered", "top_k", "source", "")
_PIECES_HEADER = struct.Struct("<I")
_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")  # sentencepiece's byte fallback


@dataclass
class TokenTrace:
    ids: np.ndarray  # (n,) int32: vocabulary ids, or indices into `pieces` when not vocab_ids
    logprobs: np.ndarray  # (n,) float32: log-probability of each chosen token
    entropy: np.ndarray | None = None  # (n,) float32, nats
    top_ids: np.ndarray | None = None  # (n, k) int32, -1 where fewer than k were given
    top_logprobs: np.ndarray | None = None  # (n, k) float32, -inf where fewer than k were given
    pieces: dict[int, bytes] = field(default_factory=dict)  # id → the token's bytes
    vocab_ids: bool = True  # False: a server named tokens only by their text; ids index `pieces`
    entropy_kind: str = ""

    def __post_init__(self):
        self.ids = np.asarray(self.ids, dtype=np.int32).reshape(-1)
        self.logprobs = np.asarray(self.logprobs, dtype=np.float32).reshape(-1)
        n = len(self.ids)
        if len(self.logprobs) != n:
            raise ValueError(f"{n} token ids but {len(self.logprobs)} log-probabilities")
        if self.entropy is not None:
            self.entropy = np.asarray(self.entropy, dtype=np.float32).reshape(-1)
            if len(self.entropy) != n:
                raise ValueError(f"{n} token ids but {len(self.entropy)} entropies")
        if (self.top_ids is None) != (self.top_logprobs is None):
            raise ValueError("top_ids and top_logprobs come together")
        if self.top_ids is not None:
            self.top_ids = np.asarray(self.top_ids, dtype=np.int32).reshape(n, -1)
            self.top_logprobs = np.asarray(self.top_logprobs, dtype=np.float32).reshape(n, -1)
            if self.top_ids.shape != self.top_logprobs.shape or self.top_ids.shape[1] > MAX_TOP_K:
                raise ValueError(f"top-k alternatives must be (n, k ≤ {MAX_TOP_K}) ids and log-probabilities alike")
        if self.entropy_kind not in ENTROPY_KINDS:
            raise ValueError(f"entropy_kind must be one of {ENTROPY_KINDS}")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def top_k(self) -> int:
        return 0 if self.top_ids is None else self.top_ids.shape[1]

    # ---- storage --------------------------------------------------------------------------

    def summary(self) -> dict:
        """The per-rollout figures people filter and sort on (None where there is nothing to measure), from the
        values as stored (float16), so a filter agrees with what the page shows."""
        stored = self.logprobs.astype("<f2").astype(np.float32)
        entropy = None if self.entropy is None else self.entropy.astype("<f2").astype(np.float32)
        return {"max_entropy": _finite(np.max, entropy), "mean_entropy": _finite(np.mean, entropy),
                "mean_logprob": _finite(np.mean, stored),
                "min_logprob": _finite(np.min, stored)}

    def columns(self) -> dict:
        """The RolloutTokens columns (without the rollout): compact little-endian arrays and the summary."""
        return self._arrays() | self.summary()

    def _arrays(self) -> dict:
        return {
            "n_tokens": len(self),
            "token_ids": self.ids.astype("<i4").tobytes(),
            "logprobs": self.logprobs.astype("<f2").tobytes(),
            "entropy": None if self.entropy is None else self.entropy.astype("<f2").tobytes(),
            "top_k": self.top_k,
            "top_ids": None if self.top_ids is None else self.top_ids.astype("<i4").tobytes(),
            "top_logprobs": None if self.top_logprobs is None else self.top_logprobs.astype("<f2").tobytes(),
            "pieces": pack_pieces(self.pieces),
            "vocab_ids": self.vocab_ids,
            "entropy_kind": self.entropy_kind,
        }

    @classmethod
    def from_columns(cls, row) -> "TokenTrace":
        """A trace from stored columns: a dict or an object with the same attributes (bytes or memoryview)."""
        get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
        n, k = get("n_tokens"), get("top_k") or 0

        def array(name, dtype, shape=None):
            raw = get(name)
            if raw is None:
                return None
            values = np.frombuffer(bytes(raw), dtype=dtype).astype(np.int32 if dtype == "<i4" else np.float32)
            return values.reshape(shape) if shape else values

        return cls(ids=array("token_ids", "<i4"), logprobs=array("logprobs", "<f2"),
                   entropy=array("entropy", "<f2"),
                   top_ids=array("top_ids", "<i4", (n, k)) if k else None,
                   top_logprobs=array("top_logprobs", "<f2", (n, k)) if k else None,
                   pieces=unpack_pieces(bytes(get("pieces") or b"")), vocab_ids=get("vocab_ids"),
                   entropy_kind=get("entropy_kind") or "")

    # ---- transport (the trainer's event files are JSON lines) ----------------------------------

    def to_json(self) -> dict:
        """The arrays as base64 text (the summary is computed again where the trace is stored)."""
        return {name: base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
                for name, value in self._arrays().items()}

    @classmethod
    def from_json(cls, data: dict) -> "TokenTrace":
        binary = ("token_ids", "logprobs", "entropy", "top_ids", "top_logprobs", "pieces")
        return cls.from_columns({name: base64.b64decode(value) if name in binary and value is not None else value
                                 for name, value in data.items()})


def _finite(reduce, values) -> float | None:
    """`reduce` over the values that are numbers (NaN: a server gave none there); None if there are none."""
    if values is None:
        return None
    values = values[~np.isnan(values)]
    return float(reduce(values)) if len(values) else None


def pack_pieces(pieces: dict[int, bytes]) -> bytes:
    """id → bytes as one blob: count (uint32), sorted ids (int32), end offsets (uint32), the bytes joined."""
    ids = sorted(pieces)
    blobs = [pieces[i] for i in ids]
    ends = np.cumsum([len(b) for b in blobs], dtype=np.int64) if blobs else np.zeros(0, np.int64)
    return (_PIECES_HEADER.pack(len(ids)) + np.asarray(ids, "<i4").tobytes() + ends.astype("<u4").tobytes()
            + b"".join(blobs))


def unpack_pieces(raw: bytes) -> dict[int, bytes]:
    if not raw:
        return {}
    (count,) = _PIECES_HEADER.unpack_from(raw)
    at = _PIECES_HEADER.size
    ids = np.frombuffer(raw, "<i4", count, at).tolist()
    ends = np.frombuffer(raw, "<u4", count, at + 4 * count).tolist()
    blob = raw[at + 8 * count:]
    starts = [0] + ends[:-1]
    return {i: blob[s:e] for i, s, e in zip(ids, starts, ends)}


# ---- entropy and token bytes -------------------------------------------------------------------

def entropy_from_top(logprobs: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row's top-k log-probabilities renormalised to sum to one: what a server that
    returns only the top k allows. -inf or NaN (no such alternative) counts as zero probability."""
    logprobs = np.asarray(logprobs, dtype=np.float64)
    logprobs = np.where(np.isfinite(logprobs), logprobs, -np.inf)
    if logprobs.ndim == 1:
        logprobs = logprobs[:, None]
    top = logprobs.max(axis=1, keepdims=True)
    weights = np.exp(logprobs - np.where(np.isfinite(top), top, 0.0))
    q = weights / np.maximum(weights.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(q > 0, -q * np.log(q), 0.0).sum(axis=1).astype(np.float32)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character table, which byte-level BPE tokenizers spell tokens with."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


BYTE_LEVEL_DECODER = {char: byte for byte, char in _bytes_to_unicode().items()}


class TokenBytes:
    """Each token id's raw bytes for a transformers tokenizer, cached: byte-level BPE spellings ('Ġthe', 'Ċ')
    mapped back to bytes, sentencepiece's '▁' to a space and '<0x0A>' to its byte, added tokens as written."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        decoder = getattr(backend, "decoder", None)
        self.byte_level = decoder is not None and "ByteLevel" in repr(decoder)
        self.added = {i for i in getattr(tokenizer, "added_tokens_decoder", {})}
        self.cache: dict[int, bytes] = {}

    def __call__(self, token_id: int) -> bytes:
        cached = self.cache.get(token_id)
        if cached is None:
            cached = self.cache[token_id] = self._bytes(token_id)
        return cached

    def pieces(self, ids) -> dict[int, bytes]:
        ids = ids.tolist() if isinstance(ids, np.ndarray) else ids
        cache = self.cache
        return {i: cache[i] if i in cache else self(i) for i in set(ids) if i >= 0}

    def _bytes(self, token_id: int) -> bytes:
        token = self.tokenizer.convert_ids_to_tokens(token_id)
        if token is None:
            return b""
        if token_id in self.added:
            return token.encode("utf-8")
        if self.byte_level and all(c in BYTE_LEVEL_DECODER for c in token):
            return bytes(BYTE_LEVEL_DECODER[c] for c in token)
        found = _BYTE_TOKEN.match(token)
        if found:
            return bytes([int(found.group(1), 16)])
        return token.replace("▁", " ").encode("utf-8")
