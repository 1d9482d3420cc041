"""The token lens: per-token traces stored beside rollouts (RolloutTokens), and drawn token by token.

Writing: a rollout row (apps.rollouts.rows.rollout_row) may carry its workers.tokens.TokenTrace
under "tokens"; `write_rollouts` inserts the rollouts with bulk_insert (which ignores that key),
finds their ids by the unique key (job, prompt, step, sample index) and inserts the traces, in
the same transaction. A retry skips rollouts already stored and their traces alike (the traces'
primary key is the rollout).

Reading: `lens()` draws a trace as HTML built here in one pass (a template loop over 10,000
tokens took far longer): one span per token, every text escaped, whitespace and undecodable
bytes made visible, each span carrying its entropy and probability shade as classes (the page
switches between them with CSS alone). What a hover shows (the values, the top alternatives)
goes beside the spans as one JSON document that static/js/tokens.js turns into a span's title
when the pointer reaches it: a title on every span was most of the page's time and size.
`aligned_group()` lines a GRPO group's samples up at the first token where they part.
"""

import html
import math
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.utils.safestring import SafeString, mark_safe

from apps.core.bulk import bulk_insert
from apps.rollouts.models import Rollout, RolloutTokens
from workers.tokens import TokenTrace

TOKENS_KEY = "tokens"
# Shade buckets (0 lightest .. 9 darkest). Fixed scales, so one colour means the same in every rollout.
ENTROPY_EDGES = np.array([0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5])  # nats
PROBABILITY_EDGES = np.array([0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.97])  # a low probability shades dark
MAX_DRAWN = 20_000  # tokens drawn on one page; past that the page says where it stopped
TOP_UNSURE = 20
CONTEXT_TOKENS = 8
ENTROPY_KIND_NOTES = {
    "sampling": "entropy of the distribution sampled from, after temperature and top-p",
    "tempered": "entropy of softmax(logits / temperature) over the whole vocabulary, as the GRPO loss computed it",
    "top_k": "entropy estimated from the server's top-k log-probabilities, renormalised (a lower bound)",
    "source": "entropy as the ingested source gave it",
    "": "",
}


# ---- writing ----------------------------------------------------------------------------------

def write_rollouts(rows: list[dict]) -> int:
    """Insert `rows` (Rollout rows, some carrying a TokenTrace under "tokens") and their traces, all or
    nothing; return how many rollouts were new."""
    with transaction.atomic():
        written = bulk_insert(Rollout, rows)
        traced = [row for row in rows if row.get(TOKENS_KEY) is not None]
        if traced:
            ids = _rollout_ids(traced)
            bulk_insert(RolloutTokens, [
                {"rollout_id": ids[_key(row)], "job_id": row["job_id"], **row[TOKENS_KEY].columns()}
                for row in traced if _key(row) in ids
            ])
    return written


def _key(row: dict) -> tuple:
    return row["job_id"], row["prompt_id"], row.get("step", 0), row.get("sample_index", 0)


def _rollout_ids(rows: list[dict]) -> dict[tuple, int]:
    ids = {}
    for job_id in {row["job_id"] for row in rows}:
        mine = [row for row in rows if row["job_id"] == job_id]
        found = Rollout.objects.filter(
            job_id=job_id, prompt_id__in={row["prompt_id"] for row in mine},
            step__in={row.get("step", 0) for row in mine},
        ).values_list("prompt_id", "step", "sample_index", "pk")
        ids |= {(job_id, prompt, step, sample): pk for prompt, step, sample, pk in found}
    return ids


def traces_of(rollouts) -> dict[int, TokenTrace]:
    """The stored traces of `rollouts` (ids or Rollout objects), by rollout id."""
    pks = [getattr(r, "pk", r) for r in rollouts]
    return {row.rollout_id: row.trace() for row in RolloutTokens.objects.filter(rollout_id__in=pks)}


# ---- drawing ----------------------------------------------------------------------------------

_CONTROL = {c: chr(0x2400 + c) for c in range(32)} | {0x7F: "␡"}
_SHOWN = {**_CONTROL, ord("\n"): "↵\n", ord("\t"): "⇥\t", ord("\r"): "␍"}
_INLINE = {**_CONTROL, ord("\n"): "↵", ord("\t"): "⇥", ord("\r"): "␍"}
_LABEL = {**_INLINE, ord(" "): "␣"}


def shown_piece(piece: bytes) -> str:
    """A token as drawn in the text: its UTF-8 text, a newline as ↵ followed by the line break, a tab as ⇥,
    other control characters as their Unicode pictures, bytes that are not whole UTF-8 (a character
    split across tokens) as \\xNN. Not escaped: the caller escapes."""
    return piece.decode("utf-8", "backslashreplace").translate(_SHOWN)


def _piece(pieces: dict[int, bytes], token_id: int) -> bytes:
    """A token's bytes, or ⟨id⟩ where the source gave only the id (an ingested trace without text)."""
    found = pieces.get(token_id)
    return found if found is not None else f"⟨{token_id}⟩".encode()


def piece_label(piece: bytes) -> str:
    """A token on one line, every space visible (␣): for titles and lists."""
    return piece.decode("utf-8", "backslashreplace").translate(_LABEL)


def _buckets(values: np.ndarray | None, edges: np.ndarray) -> np.ndarray | None:
    if values is None:
        return None
    return np.searchsorted(edges, np.nan_to_num(values, nan=0.0), side="right")


@dataclass
class UnsureToken:
    index: int
    label: str
    entropy: float
    logprob: float
    before: str
    after: str


@dataclass
class Drawing:
    """A stretch of tokens as HTML spans, and what a hover tells of each (for static/js/tokens.js): the
    values go as one JSON document rather than a title per span, which was most of the page's time and size."""

    html: SafeString
    data: dict


@dataclass
class Lens:
    drawing: Drawing
    n_tokens: int
    drawn: int
    has_entropy: bool
    top_k: int
    entropy_note: str
    unsure: list[UnsureToken]
    max_entropy: float | None
    mean_logprob: float | None
    min_logprob: float | None


def lens(stored: RolloutTokens, limit: int = MAX_DRAWN) -> Lens:
    trace = stored.trace()
    n = len(trace)
    unsure = _most_unsure(trace)
    return Lens(drawing=draw(trace, 0, min(n, limit), {u.index for u in unsure}), n_tokens=n, drawn=min(n, limit),
                has_entropy=trace.entropy is not None, top_k=trace.top_k,
                entropy_note=ENTROPY_KIND_NOTES.get(trace.entropy_kind, ""), unsure=unsure,
                max_entropy=stored.max_entropy, mean_logprob=stored.mean_logprob, min_logprob=stored.min_logprob)


def _json_numbers(values: np.ndarray, decimals: int) -> list:
    """Rounded numbers for JSON; null where a value is not finite (JSON has no NaN or infinity)."""
    rounded = np.round(values.astype(np.float64), decimals)
    return rounded.tolist() if np.isfinite(rounded).all() else _nulls(rounded.tolist())


def _nulls(value):
    if isinstance(value, list):
        return [_nulls(v) for v in value]
    return value if math.isfinite(value) else None


def draw(trace: TokenTrace, start: int, end: int, anchors: set[int] = frozenset(), id_prefix: str = "t",
         fork: int | None = None) -> Drawing:
    """Spans for tokens start..end-1, classed e<entropy bucket> p<probability bucket> (the tokens in `anchors`
    get an id, for links; the `fork` token the class "fork"), and their values for the hover."""
    pieces = trace.pieces
    ids = trace.ids[start:end].tolist()
    e_bucket = _buckets(trace.entropy[start:end], ENTROPY_EDGES) if trace.entropy is not None else None
    with np.errstate(over="ignore"):
        p_bucket = 9 - _buckets(np.exp(trace.logprobs[start:end].astype(np.float64)), PROBABILITY_EDGES)
    classes = [f"t p{p}" for p in p_bucket.tolist()]
    if e_bucket is not None:
        classes = [f"{c} e{e}" for c, e in zip(classes, e_bucket.tolist())]
    shown: dict[int, str] = {}  # token id → its escaped text: a completion repeats its tokens
    escape = html.escape
    out = []
    for offset, token_id in enumerate(ids):
        text = shown.get(token_id)
        if text is None:
            text = shown[token_id] = escape(shown_piece(_piece(pieces, token_id)))
        i = start + offset
        if i in anchors or i == fork:
            extra = f' id="{id_prefix}{i}"' if i in anchors else ""
            out.append(f'<span class="{classes[offset]}{" fork" if i == fork else ""}"{extra}>{text}</span>')
        else:
            out.append(f'<span class="{classes[offset]}">{text}</span>')
    named = set(ids)
    data = {"start": start, "ids": ids, "lp": _json_numbers(trace.logprobs[start:end], 3),
            "e": _json_numbers(trace.entropy[start:end], 3) if trace.entropy is not None else None}
    if trace.top_ids is not None:
        top_ids = trace.top_ids[start:end]
        data["top"] = top_ids.tolist()
        data["tlp"] = _json_numbers(trace.top_logprobs[start:end], 2)
        named |= set(np.unique(top_ids).tolist()) - {-1}
    data["labels"] = {token_id: piece_label(_piece(pieces, token_id)) for token_id in named}
    return Drawing(html=mark_safe("".join(out)), data=data)  # every text above went through html.escape


def _most_unsure(trace: TokenTrace, count: int = TOP_UNSURE) -> list[UnsureToken]:
    """The tokens of highest entropy (or, without entropy, lowest probability), with a few tokens either side."""
    score = trace.entropy if trace.entropy is not None else -trace.logprobs
    if not len(trace):
        return []
    order = np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")[:count]
    pieces, ids = trace.pieces, trace.ids.tolist()

    def text(a: int, b: int) -> str:
        text = b"".join(_piece(pieces, t) for t in ids[max(0, a):max(0, b)])
        return text.decode("utf-8", "backslashreplace").translate(_INLINE)

    return [UnsureToken(index=int(i), label=piece_label(_piece(pieces, ids[i])),
                        entropy=float(trace.entropy[i]) if trace.entropy is not None else float("nan"),
                        logprob=float(trace.logprobs[i]), before=text(i - CONTEXT_TOKENS, i),
                        after=text(i + 1, i + 1 + CONTEXT_TOKENS))
            for i in order]


# ---- a group, aligned at the first token where its samples part --------------------------------------

def _token_keys(trace: TokenTrace) -> list:
    """What makes two tokens the same: the vocabulary id, or the bytes where a server named tokens by text."""
    if trace.vocab_ids:
        return trace.ids.tolist()
    return [trace.pieces.get(t, b"") for t in trace.ids.tolist()]


def first_divergence(traces: list[TokenTrace]) -> int:
    """The index of the first token at which the traces are not all the same (the shortest length if none)."""
    keys = [_token_keys(t) for t in traces]
    if not keys:
        return 0
    shortest = min(len(k) for k in keys)
    for i in range(shortest):
        if any(k[i] != keys[0][i] for k in keys[1:]):
            return i
    return shortest


@dataclass
class Alignment:
    fork: int  # the first token index at which the samples are not all the same
    start: int  # where each sample's drawing starts (a few tokens before the fork)
    shared: Drawing  # the tokens before `start`, which every traced sample shares


def aligned_group(members: list[Rollout], context: int = CONTEXT_TOKENS, limit: int = 3000) -> Alignment | None:
    """Give each member with a stored trace `aligned` (a Drawing of its tokens from a little before the first
    divergence, the diverging token marked) and `aligned_cut`; None when fewer than two members have traces."""
    traces = traces_of(members)
    traced = [m for m in members if m.pk in traces]
    if len(traced) < 2:
        return None
    fork = first_divergence([traces[m.pk] for m in traced])
    start = max(0, fork - context)
    for member in traced:
        trace = traces[member.pk]
        member.aligned = draw(trace, start, min(len(trace), start + limit), set(), f"m{member.pk}-", fork=fork)
        member.trace_id = f"trace-{member.pk}"
        member.aligned_cut = len(trace) > start + limit
    shared = traces[traced[0].pk]
    return Alignment(fork=fork, start=start, shared=draw(shared, max(0, start - limit), start))


# ---- the run dashboard: per-rollout entropy, step by step ------------------------------------------------

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def entropy_by_step(job_id: int) -> dict:
    """Per step of a run, the distribution over its rollouts of their mean and their max token entropy (the
    quantiles in QUANTILES, keyed p10..p90), and how many traced rollouts each step has: what the dashboard draws
    beside TRL's own mean token entropy per step. Empty lists when the run stored no traces."""
    from django.db import connection

    names = [f"p{round(q * 100)}" for q in QUANTILES]
    result = {"steps": [], "rollouts": [], "mean_entropy": {n: [] for n in names},
              "max_entropy": {n: [] for n in names}}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT r.step, count(*), "
                "percentile_cont(%s::float8[]) WITHIN GROUP (ORDER BY t.mean_entropy), "
                "percentile_cont(%s::float8[]) WITHIN GROUP (ORDER BY t.max_entropy) "
                "FROM rollouts_rollouttokens t JOIN rollouts_rollout r ON r.id = t.rollout_id "
                "WHERE t.job_id = %s AND t.max_entropy IS NOT NULL GROUP BY r.step ORDER BY r.step",
                [list(QUANTILES), list(QUANTILES), job_id])
            rows = cursor.fetchall()
    else:  # SQLite (the demo): the same figures in Python
        by_step: dict[int, list] = {}
        for step, mean, top in (RolloutTokens.objects.filter(job_id=job_id, max_entropy__isnull=False)
                                .values_list("rollout__step", "mean_entropy", "max_entropy")):
            by_step.setdefault(step, []).append((mean, top))
        rows = [(step, len(values), *(_quantiles([v[k] for v in values]) for k in (0, 1)))
                for step, values in sorted(by_step.items())]
    for step, count, means, maxes in rows:
        result["steps"].append(step)
        result["rollouts"].append(count)
        for name, mean, top in zip(names, means, maxes):
            result["mean_entropy"][name].append(mean)
            result["max_entropy"][name].append(top)
    return result


def _quantiles(values: list[float]) -> list[float]:
    """Linear-interpolation quantiles, as Postgres' percentile_cont computes them."""
    return [float(q) for q in np.quantile(np.asarray(values, dtype=np.float64), QUANTILES)]
