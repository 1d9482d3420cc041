"""Dataset versions: freeze examples into an immutable, content-hashed version; compose a version
from samples of others in chosen proportions; diff two versions by content.

Everything here is sized for the R1 report's stage-3 set (~600k reasoning + ~200k non-reasoning
examples): version entries go in chunks through `bulk_insert`, samples are drawn over compact
numpy arrays of ids and hashes, copies between datasets are made by the database in chunks, and a
diff is two anti-joins in the database. No query runs per example.
"""

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from django import forms
from django.db import connection, transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from apps.core import audit
from apps.core.bulk import bulk_insert
from apps.datasets.models import Dataset, DatasetVersion, DatasetVersionExample, Example
from apps.jobs.kinds import job_kind
from workers.hashing import mix64

CHUNK = 5000  # rows per query when reading or copying examples
RANGE_CHUNK = 50_000  # positions of a version read per query when sampling it (two integers a row)
COPY_CHUNK = 5000  # examples per copy statement
DIFF_SAMPLES = 20
ANALYZE_AFTER = 10_000  # entries: a freeze this large refreshes the planner's statistics (a sample, ~0.3 s)
FORMAT_SAMPLE = 200  # examples of a version read to tell its formats (evenly spaced; each read whole)

# How an example's last assistant turn writes its reasoning and answer: what SFT on it teaches a model to write.
EXAMPLE_FORMATS = {
    "r1_zero": "R1-Zero tags (<think>…</think> <answer>…</answer>)",
    "think": "chat format (<think>…</think>, then the answer as plain text)",
    "special_token": "|special_token| separators",
    "reasoning_field": "reasoning in a reasoning_content field",
    "plain": "no reasoning (a plain answer)",
    "no_assistant": "no assistant turn",
}


# -- freezing ------------------------------------------------------------------------------------


def freeze_version(dataset: Dataset, examples: Iterable[Example] | QuerySet, user=None, note: str = "",
                   provenance: dict | None = None, via: str = "web") -> DatasetVersion:
    """A new version of `dataset` holding `examples` in this order; its hash is over their content hashes.

    `examples` may be a list of Example objects (only pk and content_hash are read) or a QuerySet of
    examples, which is streamed, so a million-example freeze never holds a million objects.
    Every example must belong to `dataset` and appear once (ValueError otherwise; nothing is written).
    Every freeze, whoever asks (a page, the API, a queue, a job), leaves one audit event.
    """
    if isinstance(examples, QuerySet):
        rows = examples.values_list("pk", "content_hash").iterator(chunk_size=CHUNK)
    else:
        rows = ((example.pk, example.content_hash) for example in examples)
    provenance = provenance or {}
    version = _write_version(dataset, rows, user=user, note=note, provenance=provenance)
    source = {key: provenance[key] for key in ("from", "queue", "job") if key in provenance}
    audit.record(user, "version.freeze", version, via=via, examples=version.example_count,
                 content_hash=version.content_hash, **source)
    return version


def freeze_all_examples(dataset: Dataset, user=None, note: str = "", via: str = "web") -> DatasetVersion:
    """Every example now in `dataset`, ordered by id."""
    if not dataset.examples.exists():
        raise ValueError(f"Dataset {dataset.name!r} has no examples; there is nothing to freeze")
    return freeze_version(dataset, dataset.examples.order_by("pk"), user=user, note=note,
                          provenance={"from": "all examples"}, via=via)


def _write_version(dataset: Dataset, rows: Iterable[tuple[int, str]], *, user, note: str,
                   provenance: dict, check_dataset: bool = True) -> DatasetVersion:
    """Write the version's entries from a stream of (example id, content hash), hashing as they pass.

    `check_dataset` refuses examples of other datasets (a join over the whole version); compose
    skips it because it made every id belong to `dataset` itself.
    """
    digest = hashlib.sha256()
    count = 0

    def entries(version_id: int) -> Iterator[dict]:
        nonlocal count
        for position, (example_id, example_hash) in enumerate(rows):
            digest.update(example_hash.encode() if isinstance(example_hash, str) else bytes(example_hash))
            count = position + 1
            yield {"version_id": version_id, "example_id": int(example_id), "position": position}

    with transaction.atomic():
        Dataset.objects.select_for_update().filter(pk=dataset.pk).first()  # one freeze at a time per dataset
        number = (dataset.versions.aggregate(last=Max("number"))["last"] or 0) + 1
        version = DatasetVersion.objects.create(
            dataset=dataset, number=number, content_hash="", example_count=0, note=note, provenance=provenance,
            created_by=user,
        )
        written = bulk_insert(DatasetVersionExample, entries(version.pk))
        if written != count:
            raise ValueError(f"{count - written} example(s) appear more than once; a version holds each once")
        foreign = DatasetVersionExample.objects.filter(version=version).exclude(example__dataset_id=dataset.pk)
        if check_dataset and foreign.exists():
            ids = list(foreign.values_list("example_id", flat=True)[:10])
            raise ValueError(f"Examples {ids} are not in dataset {dataset.name!r}; a version holds its own examples")
        if count >= ANALYZE_AFTER and connection.vendor == "postgresql":
            # Until Postgres has statistics on the new rows it plans as if the version held one row,
            # and a diff against it became a nested loop over the whole table (still running after 15 minutes at 800k).
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {connection.ops.quote_name(DatasetVersionExample._meta.db_table)}")
        # The hash and count are known only once the stream has passed. This UPDATE is part of the
        # freeze's own transaction, so no one ever sees the version without them.
        DatasetVersion.objects.filter(pk=version.pk).update(content_hash=digest.hexdigest(), example_count=count)
    version.refresh_from_db()
    return version


def same_content_as(version: DatasetVersion) -> DatasetVersion | None:
    """The latest earlier version of the same dataset with the same content hash, if any."""
    return (DatasetVersion.objects.filter(dataset_id=version.dataset_id, content_hash=version.content_hash,
                                          number__lt=version.number).order_by("-number").first())


# -- composing -----------------------------------------------------------------------------------


def compose_version(dataset: Dataset, parts: list[tuple[DatasetVersion, int]], seed: int = 0, user=None,
                    note: str = "", via: str = "web", provenance: dict | None = None) -> DatasetVersion:
    """A new version of `dataset` mixing `count` examples sampled from each source version.

    Sampling is without replacement and deterministic for `seed`; so is the mixed order. Examples
    with the same content (hash) are kept once, the first in mixed order; the version's provenance
    says how many were dropped. Sources in `dataset` contribute their own rows; examples of other
    datasets are copied into `dataset` (or the copy already there is used), with
    `{"copied_from": source example id, ...source provenance}`. All or nothing. `provenance` adds keys
    of the caller's to the version's (a producing job: {"job": id, ...}).
    """
    if not parts:
        raise ValueError("Name at least one source version")
    for version, count in parts:
        if count < 1:
            raise ValueError(f"Count for {version} must be at least 1, got {count}")
        if count > version.example_count:
            raise ValueError(f"{version} has {version.example_count} examples; cannot take {count}")

    ids, hashes, mix_keys, foreign = [], [], [], []
    for index, (version, count) in enumerate(parts):
        positions = _sample_positions(version, count, seed, stream=f"sample/{index}")
        part_ids, part_hashes = _entries_at(version, positions)
        ids.append(part_ids)
        hashes.append(part_hashes)
        mix_keys.append(_keys(seed, f"mix/{index}", version.pk, positions))
        foreign.append(np.full(len(positions), version.dataset_id != dataset.pk))
    ids, hashes, mix_keys, foreign = (np.concatenate(a) for a in (ids, hashes, mix_keys, foreign))

    order = np.argsort(mix_keys, kind="stable")
    ids, hashes, foreign = ids[order], hashes[order], foreign[order]
    _, first = np.unique(hashes, return_index=True)  # the first of each content, in mixed order
    keep = np.sort(first)
    duplicates = len(ids) - len(keep)
    ids, hashes, foreign = ids[keep], hashes[keep], foreign[keep]

    warning = format_warning([version for version, _ in parts])
    provenance = {
        **(provenance or {}),
        "composed_from": [
            {"version": v.pk, "dataset": v.dataset.name, "dataset_id": v.dataset_id, "number": v.number,
             "content_hash": v.content_hash, "count": count}
            for v, count in parts
        ],
        "seed": seed,
        "sampled": int(sum(count for _, count in parts)),
        "duplicates_dropped": int(duplicates),
    }
    if warning:
        provenance["format_warning"] = warning
    with transaction.atomic():
        copied = _copy_into(dataset, ids, hashes, foreign, user)
        provenance["copied_examples"] = copied
        version = _write_version(dataset, _pairs(ids, hashes), user=user, note=note, provenance=provenance,
                                 check_dataset=False)
        audit.record(user, "version.compose", version, via=via, sources=provenance["composed_from"], seed=seed,
                     examples=version.example_count, duplicates_dropped=provenance["duplicates_dropped"],
                     copied_examples=copied)
    return version


def example_format(messages: list[dict]) -> str:
    """The format (a key of EXAMPLE_FORMATS) of an example's last assistant turn: <answer> tags mark R1-Zero's
    template; </think> without them, R1's chat format (a queue's cold-start rewrite too)."""
    assistant = next((m for m in reversed(messages or []) if isinstance(m, dict) and m.get("role") == "assistant"),
                     None)
    if assistant is None:
        return "no_assistant"
    content = assistant.get("content") or ""
    if assistant.get("reasoning_content") or assistant.get("reasoning"):
        return "reasoning_field"
    if "<answer>" in content:
        return "r1_zero"
    if "|special_token|" in content:
        return "special_token"
    if "</think>" in content:
        return "think"
    return "plain"


def version_formats(version: DatasetVersion, sample: int = FORMAT_SAMPLE) -> Counter:
    """How many of `sample` evenly spaced examples of `version` are in each format (one query)."""
    step = max(1, -(-version.example_count // sample))
    positions = list(range(0, version.example_count, step))
    rows = (DatasetVersionExample.objects.filter(version=version, position__in=positions)
            .values_list("example__messages", flat=True))
    return Counter(example_format(messages) for messages in rows)


def format_warning(versions: list[DatasetVersion]) -> str:
    """A warning, in words, when the examples of `versions` (a sample of each) are in more than one format;
    "" when they share one. SFT on a mix teaches a model to answer both ways."""
    per_version = {str(v): version_formats(v) for v in dict.fromkeys(versions)}
    if len(set().union(*per_version.values())) <= 1:
        return ""
    described = "; ".join(
        f"{name}: " + ", ".join(f"{n}/{counts.total()} {EXAMPLE_FORMATS[fmt]}" for fmt, n in counts.most_common())
        for name, counts in per_version.items())
    return (f"These examples mix formats ({described}; read from up to {FORMAT_SAMPLE} examples of each). "
            "A model fine-tuned on the mix learns to answer both ways: keep one format, or train with the SFT "
            "format cold_start or r1_zero, which writes every example's reasoning and answer the same way.")


def _pairs(ids: np.ndarray, hashes: np.ndarray) -> Iterator[tuple[int, bytes]]:
    """(id, hash) as Python values, a chunk at a time: 800k of them at once would be ~100 MB."""
    for start in range(0, len(ids), CHUNK):
        yield from zip(ids[start:start + CHUNK].tolist(), hashes[start:start + CHUNK].tolist(), strict=True)


class ComposeParamsForm(forms.Form):
    """The `compose_version` job's parameters: a composition too large for one page request."""

    dataset = forms.SlugField(max_length=100, help_text="The dataset the new version belongs to (made if new)")
    parts = forms.JSONField(help_text='Source versions and counts: [[version id, count], ...]')
    seed = forms.IntegerField(min_value=0, initial=0)
    note = forms.CharField(required=False, max_length=2000)

    def clean_parts(self):
        parts = self.cleaned_data["parts"]
        shape = isinstance(parts, list) and parts and all(
            isinstance(p, list) and len(p) == 2 and all(type(n) is int for n in p) for p in parts)
        if not shape:
            raise forms.ValidationError("must be a non-empty list of [version id, count] pairs of whole numbers")
        versions = DatasetVersion.objects.select_related("dataset").in_bulk([pk for pk, _ in parts])
        errors = []
        for number, (pk, count) in enumerate(parts, start=1):
            if pk not in versions:
                errors.append(f"part {number}: there is no dataset version #{pk}")
            elif not 1 <= count <= versions[pk].example_count:
                errors.append(f"part {number}: {versions[pk]} has {versions[pk].example_count} examples; "
                              f"cannot take {count}")
        if errors:
            raise forms.ValidationError(errors)
        return parts


@job_kind("compose_version", "Compose a dataset version", ComposeParamsForm, own_page="dataset_list")
def run_compose(ctx) -> dict:
    """The `compose_version` job: compose_version with the job's parameters."""
    params = ctx.params
    user = ctx.job.created_by
    dataset, _ = Dataset.objects.get_or_create(name=params["dataset"], defaults={"created_by": user})
    versions = DatasetVersion.objects.select_related("dataset").in_bulk([pk for pk, _ in params["parts"]])
    parts = [(versions[pk], count) for pk, count in params["parts"]]
    ctx.log(f"composing {sum(c for _, c in parts)} examples from {len(parts)} versions into {dataset.name}")
    version = compose_version(dataset, parts, seed=params["seed"], user=user, note=params.get("note", ""), via="job")
    ctx.log(f"froze {version}: {version.example_count} examples")
    result = {"dataset_version": version.pk, "version": str(version), "examples": version.example_count,
              "duplicates_dropped": version.provenance["duplicates_dropped"],
              "copied_examples": version.provenance["copied_examples"]}
    if version.provenance.get("format_warning"):
        ctx.log(f"warning: {version.provenance['format_warning']}")
        result["format_warning"] = version.provenance["format_warning"]
    return result


def _keys(seed: int, stream: str, version_id: int, positions: np.ndarray) -> np.ndarray:
    """A pseudo-random 64-bit key per position, fixed by (seed, stream, version).

    Plain arithmetic rather than `random`: Python and numpy may change their generators'
    streams between releases, and a composed version must be reproducible from its provenance.
    """
    base = int.from_bytes(hashlib.blake2b(f"{seed}:{stream}:{version_id}".encode(), digest_size=8).digest())
    return mix64(positions.astype(np.uint64) ^ np.uint64(base))


def _sample_positions(version: DatasetVersion, count: int, seed: int, stream: str) -> np.ndarray:
    """`count` distinct positions of `version`: those with the smallest keys, in ascending order."""
    positions = np.arange(version.example_count, dtype=np.int64)
    if count < len(positions):
        keys = _keys(seed, stream, version.pk, positions)
        positions = positions[np.argpartition(keys, count - 1)[:count]]
    return np.sort(positions)


def _entries_at(version: DatasetVersion, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The example ids and content hashes at `positions` (ascending) of `version`, in that order.

    Entries are read by position range (an index range scan; a long IN list on position makes
    Postgres scan every version's entries), then the hashes of the chosen examples by id.
    """
    ids = np.empty(len(positions), dtype=np.int64)
    entries = DatasetVersionExample.objects.filter(version=version)
    start = 0
    while start < len(positions):
        low = int(positions[start])
        high = low + RANGE_CHUNK  # positions [low, high)
        stop = int(np.searchsorted(positions, high))
        found = np.array(entries.filter(position__gte=low, position__lt=high).order_by("position")
                         .values_list("position", "example_id"), dtype=np.int64).reshape(-1, 2)
        at = np.searchsorted(found[:, 0], positions[start:stop])
        if len(found) == 0 or at.max() >= len(found) or (found[at, 0] != positions[start:stop]).any():
            raise ValueError(f"{version} is missing entries at some positions; it cannot be sampled")
        ids[start:stop] = found[at, 1]
        start = stop
    hashes = np.empty(len(positions), dtype="S64")
    size = _chunk_for_in_lookup()
    for start in range(0, len(ids), size):
        chunk = ids[start:start + size].tolist()
        by_id = dict(Example.objects.filter(pk__in=chunk).values_list("pk", "content_hash"))
        hashes[start:start + len(chunk)] = [by_id[pk].encode() for pk in chunk]
    return ids, hashes


def _chunk_for_in_lookup() -> int:
    limit = connection.features.max_query_params  # None on Postgres; SQLite has a limit
    return min(CHUNK, limit - 10) if limit else CHUNK


def _copy_into(dataset: Dataset, ids: np.ndarray, hashes: np.ndarray, foreign: np.ndarray, user,
               in_database: bool | None = None) -> int:
    """Replace the ids of examples from other datasets (in place) by their copies in `dataset`.

    A copy is skipped when `dataset` already has that content; its existing row is used.
    Returns how many copies were made. On Postgres the rows are copied by the server
    (INSERT ... SELECT), so the messages never cross the wire: five times faster than
    reading them into Python and writing them back, which is what other databases do.
    """
    if in_database is None:
        in_database = connection.vendor == "postgresql"
    user_id = user.pk if user is not None and user.is_authenticated else None
    made = 0
    where = np.flatnonzero(foreign)
    for start in range(0, len(where), COPY_CHUNK):
        at = where[start:start + COPY_CHUNK]
        source_ids = ids[at].tolist()
        wanted = [h.decode() for h in hashes[at].tolist()]
        if in_database:
            in_target = _copy_in_database(dataset, source_ids, user_id)
        else:
            in_target = _copy_through_python(dataset, source_ids, user_id)
        made += len(in_target)
        missing = [h for h in wanted if h not in in_target]  # content the target had already
        if missing:
            in_target |= dict(Example.objects.filter(dataset=dataset, content_hash__in=missing)
                              .values_list("content_hash", "pk"))
        ids[at] = [in_target[h] for h in wanted]
    return made


def _copy_in_database(dataset: Dataset, source_ids: list[int], user_id: int | None) -> dict[str, int]:
    """Copy the examples in the server; returns {content hash: new id} of the copies made."""
    table = connection.ops.quote_name(Example._meta.db_table)
    with connection.cursor() as cursor:
        # `{"copied_from": id} || provenance`: the source's own keys win, as in {"copied_from": id, **provenance}.
        cursor.execute(
            f"""INSERT INTO {table} (dataset_id, messages, prompt_id, source_rollout_id, annotation_id, source,
                                     provenance, content_hash, created_by_id, created_at)
                SELECT %s, messages, prompt_id, source_rollout_id, annotation_id, source,
                       jsonb_build_object('copied_from', id) || provenance, content_hash, %s, %s
                FROM {table} WHERE id = ANY(%s)
                ON CONFLICT (dataset_id, content_hash) DO NOTHING
                RETURNING content_hash, id""",
            [dataset.pk, user_id, timezone.now(), source_ids],
        )
        return dict(cursor.fetchall())


def _copy_through_python(dataset: Dataset, source_ids: list[int], user_id: int | None) -> dict[str, int]:
    """Copy through bulk_insert (any database); returns {content hash: new id} of the copies made."""
    fields = ["pk", "messages", "prompt_id", "source_rollout_id", "annotation_id", "source", "provenance",
              "content_hash"]
    sources = list(Example.objects.filter(pk__in=source_ids).values(*fields))
    there = set(Example.objects.filter(dataset=dataset, content_hash__in=[s["content_hash"] for s in sources])
                .values_list("content_hash", flat=True))
    new = [s for s in sources if s["content_hash"] not in there]
    bulk_insert(Example, [
        {"dataset_id": dataset.pk, "messages": s["messages"], "prompt_id": s["prompt_id"],
         "source_rollout_id": s["source_rollout_id"], "annotation_id": s["annotation_id"], "source": s["source"],
         "provenance": {"copied_from": s["pk"], **s["provenance"]}, "content_hash": s["content_hash"],
         "created_by_id": user_id}
        for s in new
    ])
    return dict(Example.objects.filter(dataset=dataset, content_hash__in=[s["content_hash"] for s in new])
                .values_list("content_hash", "pk"))


# -- diffing -------------------------------------------------------------------------------------


@dataclass
class VersionDiff:
    """What changed from version `a` to version `b`, by content hash."""

    a: DatasetVersion
    b: DatasetVersion
    added: int  # content in b and not in a
    removed: int  # content in a and not in b
    kept: int  # content in both
    added_examples: list[Example] = field(default_factory=list)  # the first few, in b's order
    removed_examples: list[Example] = field(default_factory=list)  # the first few, in a's order


def diff_versions(a: DatasetVersion, b: DatasetVersion, samples: int = DIFF_SAMPLES) -> VersionDiff:
    """Counted in the database with set operations on content hashes, so large versions never load.

    INTERSECT and EXCEPT sort or hash each side once. An anti-join (NOT EXISTS) was the first
    try: right after a freeze, before Postgres has statistics on the new rows, it planned a
    nested loop that scanned one version once per row of the other (six minutes for 45k rows).
    Within a version every content hash is distinct (one dataset, one row per content), so
    kept = |a ∩ b|, added = |b| - kept, removed = |a| - kept.
    """
    kept = _hashes(a).intersection(_hashes(b)).count()
    added, removed = b.example_count - kept, a.example_count - kept
    return VersionDiff(
        a=a, b=b, added=added, removed=removed, kept=kept,
        added_examples=_samples_only_in(b, a, samples) if added else [],
        removed_examples=_samples_only_in(a, b, samples) if removed else [],
    )


def _hashes(version: DatasetVersion) -> QuerySet:
    return DatasetVersionExample.objects.filter(version=version).values_list("example__content_hash", flat=True)


def _samples_only_in(version: DatasetVersion, other: DatasetVersion, limit: int) -> list[Example]:
    """A few examples of `version` whose content is not in `other` (the smallest hashes: a fair spread),
    in `version`'s order."""
    wanted = list(_hashes(version).difference(_hashes(other)).order_by("example__content_hash")[:limit])
    # Two index lookups, not a join: a join's plan depends on statistics a new version lacks.
    examples = Example.objects.in_bulk(list(Example.objects.filter(
        dataset_id=version.dataset_id, content_hash__in=wanted).values_list("pk", flat=True)))
    order = DatasetVersionExample.objects.filter(version=version, example_id__in=list(examples))
    return [examples[pk] for pk in order.order_by("position").values_list("example_id", flat=True)]


def provenance_summary(provenance: dict) -> str:
    """One line for a version's provenance, for lists."""
    if "composed_from" in provenance:
        sources = ", ".join(f"{s['dataset']} v{s['number']} × {s['count']:,}" for s in provenance["composed_from"])
        dropped = provenance.get("duplicates_dropped", 0)
        return f"composed from {sources}; seed {provenance.get('seed')}" + (
            f"; {dropped:,} duplicates dropped" if dropped else "")
    if provenance.get("from") == "all examples":
        return "all examples of the dataset"
    if provenance.get("from") == "decontamination":
        return (f"decontaminated (check #{provenance.get('decontam_check')}): {provenance.get('removed_count', 0):,} "
                f"removed as matching {', '.join(provenance.get('benchmarks', []))}")
    if provenance.get("from") == "de-duplication":
        return f"de-duplicated (run #{provenance.get('dedup_run')}): {provenance.get('dropped', 0):,} dropped"
    if "job" in provenance:
        return f"made by job #{provenance['job']}"
    return ", ".join(f"{key}: {value}" for key, value in provenance.items())[:200] or "—"


def example_provenance_summary(provenance: dict) -> str:
    """A few words on where one example came from, for rows."""
    parts = []
    if provenance.get("copied_from"):
        parts.append(f"copy of #{provenance['copied_from']}")
    if provenance.get("bulk_action"):
        parts.append(f"bulk action #{provenance['bulk_action']}")
    if provenance.get("queue"):
        parts.append(f"queue #{provenance['queue']}")
    if provenance.get("job"):
        parts.append(f"job #{provenance['job']}")
    edits = provenance.get("edits") or []
    if edits:
        editors = sorted({edit.get("by", "?") for edit in edits})
        parts.append(f"{len(edits)} edit{'s' if len(edits) != 1 else ''} by {', '.join(editors)}")
    if provenance.get("adjudicated_by"):
        parts.append(f"adjudicated by {provenance['adjudicated_by']}")
    return "; ".join(parts)
